// FuzzVirtqueueChains: a guest's split virtqueue (descriptor table, available ring, indirect
// tables, buffers) in 64 KiB of "guest memory" the input fills: every available chain is
// walked (loops, lengths, indirect nesting, readable/writable order), taken as a transmitted
// frame and received into (mergeable or not), used rings published and notifications decided.
// Nothing may touch memory outside the 64 KiB (AddressSanitizer watches). Input: queue-size
// exponent, feature bits, then the memory image (VhostUserFuzz.descriptorChains).
import VhostUser

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVirtqueueChains(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    VhostUserFuzz.descriptorChains(UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size))
    return 0
}
