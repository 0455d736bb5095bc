// FuzzVhostUserMessage: a vhost-user message from a hostile front-end (header, payload, a
// descriptor count) through VhostUserMessage.decode — every size checked against the request,
// every descriptor count against what it carries — and, if it decodes, applied to a back-end
// state machine (VhostUserFuzz.message). Input: 1 byte descriptor count (low 4 bits), then the
// 12-byte header and the payload.
import VhostUser

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVhostUserMessage(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    VhostUserFuzz.message(UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size))
    return 0
}
