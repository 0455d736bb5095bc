// FuzzVhostUserSession: a hostile front-end's whole conversation with a two-pair (multi-queue)
// device backed by real guest memory (VhostUserFuzz.session): up to 32 messages decoded and
// applied in order, so rings really start, get enabled and disabled (SET_VRING_ENABLE), stopped
// (GET_VRING_BASE) and reset, with queue indexes past the pairs refused; a checking host asserts
// the back-end hands out only rings that exist, each once. Input: per message 1 byte descriptor
// count (low 2 bits), the 12-byte header, the payload it announces.
import VhostUser

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVhostUserSession(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    VhostUserFuzz.session(UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size))
    return 0
}
