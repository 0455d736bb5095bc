// LineBufferTests: the control socket's line splitter does work linear in the bytes received
// (it was quadratic: every line moved everything behind it to the front, and every call
// rescanned all pending bytes for a newline), and keeps its semantics against a naive
// reference splitter on many shapes of input.
import Testing
@testable import Control

@Suite struct LineBufferTests {
    /// The splitter as it was (quadratic), as the reference for what each call returns.
    struct NaiveSplitter {
        let limit: Int
        var pending: [UInt8] = []
        mutating func next() -> LineBuffer.Next {
            if let nl = pending.firstIndex(of: 0x0A) {
                guard nl <= limit else { return .tooLong }
                var line = Array(pending[..<nl])
                pending.removeSubrange(...nl)
                if line.last == 0x0D { line.removeLast() }
                return .line(line)
            }
            return pending.count > limit ? .tooLong : .needMore
        }
    }

    @Test func manyPipelinedLinesInOneAppendCostLinearWork() {
        let lines = 100_000
        var bytes: [UInt8] = []
        bytes.reserveCapacity(lines * 4)
        for i in 0..<lines { bytes += [0x61 + UInt8(i % 26), 0x62, 0x0A] }
        var b = LineBuffer()
        b.append(bytes)
        var seen = 0
        while case .line(let line) = b.next() {
            #expect(line.count == 2)
            seen += 1
        }
        #expect(seen == lines)
        #expect(b.next() == .needMore)
        #expect(b.remainder.isEmpty)
        // Each byte is compared, copied and moved a bounded number of times (the old splitter:
        // about lines²·1.5 bytes moved, 1.5e10 here).
        #expect(b.work <= 4 * bytes.count, "work \(b.work) for \(bytes.count) bytes")
    }

    @Test func aLongLineTrickledByteByByteCostsLinearWork() {
        let limit = ControlProtocol.maxRequestBytes
        var b = LineBuffer(limit: limit)
        for _ in 0..<limit {
            b.append(CollectionOfOne(UInt8(0x78)))
            #expect(b.next() == .needMore)
        }
        b.append(CollectionOfOne(UInt8(0x0A)))
        #expect(b.next() == .line([UInt8](repeating: 0x78, count: limit)))
        #expect(b.work <= 4 * (limit + 1), "work \(b.work) for \(limit + 1) bytes")
        // One byte past the limit, still trickled: refused without rescanning.
        var c = LineBuffer(limit: limit)
        for _ in 0...limit { c.append(CollectionOfOne(UInt8(0x78))) ; _ = c.next() }
        #expect(c.next() == .tooLong)
        #expect(c.work <= 4 * (limit + 1), "work \(c.work) for \(limit + 1) bytes")
    }

    @Test func aHugeAppendPastTheLimitIsRefusedAfterScanningOnlyTheLimit() {
        var b = LineBuffer(limit: 1000)
        b.append([UInt8](repeating: 0x41, count: 1_000_000) + [0x0A])
        #expect(b.next() == .tooLong)
        #expect(b.next() == .tooLong)
        #expect(b.work <= 1001)
    }

    @Test func agreesWithTheNaiveSplitterOnEveryCut() {
        // Lines of every length around a small limit, CRLF and LF, cut into appends of 1...7.
        var stream: [UInt8] = []
        var seed: UInt64 = 0x2545F4914F6CDD1D
        func random(_ n: Int) -> Int { seed ^= seed << 13; seed ^= seed >> 7; seed ^= seed << 17; return Int(seed % UInt64(n)) }
        for _ in 0..<400 {
            stream += (0..<random(12)).map { _ in UInt8(0x30 + random(10)) }
            if random(3) == 0 { stream.append(0x0D) }
            stream.append(0x0A)
        }
        for limit in [0, 1, 4, 8, 11] {
            for cut in 1...7 {
                var b = LineBuffer(limit: limit)
                var naive = NaiveSplitter(limit: limit)
                var at = 0
                feeding: while at < stream.count {
                    let end = min(stream.count, at + cut)
                    b.append(stream[at..<end]); naive.pending += stream[at..<end]
                    at = end
                    while true {
                        let got = b.next(), want = naive.next()
                        #expect(got == want, "limit \(limit) cut \(cut) at \(at)")
                        guard got == want else { return }
                        if got == .needMore { continue feeding }
                        if got == .tooLong { break feeding }
                    }
                }
                #expect(b.remainder == naive.pending)
            }
        }
    }
}
