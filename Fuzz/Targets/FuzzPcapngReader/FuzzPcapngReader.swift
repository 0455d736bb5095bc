// FuzzPcapngReader: the pcapng stream `tapbridge capture` reads from the daemon's control
// socket, fed to PcapngStreamReader whole and again in chunks of a size the input picks. Both
// must yield the same packets and statistics (or fail at the same block), every packet's bytes
// must lie inside its block, and the reader may never buffer much more than one block.
// Input: 2 bytes chunk size, then the stream.
import Capture
import FuzzSupport

enum Item: Equatable { case packet(UInt16, UInt64, Int, [UInt8]), stats(UInt16, UInt64, UInt64), failed }

func read(_ stream: UnsafeRawBufferPointer, chunk: Int) -> [Item] {
    var reader = PcapngStreamReader()
    var items: [Item] = []
    var at = 0
    repeat {
        let end = min(stream.count, at + chunk)
        do {
            try reader.feed(UnsafeRawBufferPointer(rebasing: stream[at..<end]), frame: { p in
                fuzzCheck(p.data.count <= PcapngStreamReader.maxBlock, "packet of \(p.data.count) bytes")
                items.append(.packet(p.interface, p.timestamp, p.originalLength, Array(p.data)))
            }, statistics: { items.append(.stats($0, $1, $2)) })
        } catch {
            items.append(.failed)
            return items
        }
        at = end
    } while at < stream.count
    return items
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzPcapngReader(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let chunk = input.int(in: 1...4096)
    let stream = input.rest()
    let whole = read(stream, chunk: max(1, stream.count))
    let chunked = read(stream, chunk: chunk)
    fuzzCheck(whole == chunked, "whole and chunked reads disagree")
    return 0
}
