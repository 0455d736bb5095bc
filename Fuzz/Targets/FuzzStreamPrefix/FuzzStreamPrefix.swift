// FuzzStreamPrefix: QEMU stream framing (4-byte big-endian length + frame) from a hostile
// peer, judged by StreamPrefix.next, the one decoder the io_uring workers use. The same bytes
// are walked twice: all at once, and as the worker receives them (reads of a size the input
// picks into a receive buffer of 4 + max-frame bytes, the unfinished tail moved to the front
// after each read). Both walks must report the same frames, runts and fatal error; every frame
// lies inside the bytes received and inside 14...max-frame; the receive buffer always has room
// for the next read (a full buffer would read 0 bytes, which looks like end of file).
// Input: 2 bytes max-frame (minus 14), 2 bytes read size (minus 1), then the stream.
import Datapath
import FuzzSupport

enum Event: Equatable { case frame(Int, UInt64), runt(Int), fatal(FramingError) }

@inline(__always)
func digest(_ p: UnsafeRawPointer, _ n: Int) -> UInt64 {
    var h: UInt64 = 0xcbf2_9ce4_8422_2325
    for i in 0..<n { h = (h ^ UInt64(p.load(fromByteOffset: i, as: UInt8.self))) &* 0x100_0000_01b3 }
    return h
}

/// Walks `available` bytes at `base` as Worker.handleStreamRead does; returns the bytes consumed
/// and whether the stream was closed.
func walk(_ base: UnsafeRawPointer, available: Int, maxFrame: Int, into events: inout [Event]) -> (consumed: Int, closed: Bool) {
    var off = 0
    while true {
        switch StreamPrefix.next(base + off, available: available - off, maxFrame: maxFrame) {
        case .needMore:
            let left = available - off
            fuzzCheck(left < 4 || 4 + StreamPrefix.length(at: base + off) > left, "needMore with a whole frame at \(off)")
            return (off, false)
        case .fatal(let e):
            fuzzCheck(e.isFatal, "non-fatal error \(e) reported as fatal")
            events.append(.fatal(e))
            return (off, true)
        case let .skip(n, e):
            fuzzCheck(!e.isFatal && n > 0 && n < StreamPrefix.minimumFrame, "skip of \(n) bytes for \(e)")
            fuzzCheck(off + 4 + n <= available, "skip past the received bytes")
            events.append(.runt(n)); off += 4 + n
        case .frame(let n):
            fuzzCheck(n >= StreamPrefix.minimumFrame && n <= maxFrame, "frame of \(n) bytes outside 14...\(maxFrame)")
            fuzzCheck(off + 4 + n <= available, "frame past the received bytes")
            events.append(.frame(n, digest(base + off + 4, n))); off += 4 + n
        }
    }
}

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzStreamPrefix(_ data: UnsafeRawPointer, _ count: Int) -> CInt {
    var input = FuzzInput(data, count)
    let maxFrame = input.int(in: StreamPrefix.minimumFrame...StreamPrefix.absoluteMaxFrame + 12)
    let readSize = input.int(in: 1...9_000)
    let stream = input.rest()
    guard let base = stream.baseAddress else { return 0 }

    var oneShot: [Event] = []
    let whole = walk(base, available: stream.count, maxFrame: maxFrame, into: &oneShot)

    // The worker: a receive buffer of 4 + max-frame bytes, reads of at most `readSize`.
    let capacity = 4 + maxFrame
    let rx = UnsafeMutableRawPointer.allocate(byteCount: capacity, alignment: 64)
    defer { rx.deallocate() }
    var fill = 0, fed = 0, closed = false
    var reads: [Event] = []
    while fed < stream.count && !closed {
        let room = capacity - fill
        fuzzCheck(room > 0, "receive buffer full with \(fill) bytes of an unfinished frame")
        let n = min(room, readSize, stream.count - fed)
        rx.advanced(by: fill).copyMemory(from: base + fed, byteCount: n)
        fed += n; fill += n
        let r = walk(rx, available: fill, maxFrame: maxFrame, into: &reads)
        closed = r.closed
        if r.consumed > 0 {
            fill -= r.consumed
            if fill > 0 { rx.copyMemory(from: rx + r.consumed, byteCount: fill) }
        }
    }
    fuzzCheck(reads == oneShot, "read-by-read and one-shot walks disagree: \(reads) vs \(oneShot)")
    if !closed { fuzzCheck(fill == stream.count - whole.consumed, "\(fill) bytes left over, one-shot left \(stream.count - whole.consumed)") }
    return 0
}
