// FuzzVhostUserMemoryTable: SET_MEM_TABLE regions and their files' sizes through
// GuestMemoryLayout.validate (counts, zero sizes, overflows, past the file's end, overlaps);
// a table that passes must translate guest-physical and user addresses only inside one region
// (checked independently of the translation code). Input: VhostUserFuzz.memoryTable's layout.
import VhostUser

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzVhostUserMemoryTable(_ data: UnsafeRawPointer, _ size: Int) -> CInt {
    VhostUserFuzz.memoryTable(UnsafeRawBufferPointer(start: size > 0 ? data : nil, count: size))
    return 0
}
