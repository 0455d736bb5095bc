// The fuzz targets' entry functions run over random and hand-made inputs (a short, seeded,
// bounded sweep; the real fuzzing runs them under libFuzzer with sanitizers).
import Foundation
import Testing
@testable import VhostUser

struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct FuzzEntryTests {
    func sweep(_ runs: Int, maxLength: Int, seed: UInt64, _ body: (UnsafeRawBufferPointer) -> Void) {
        var rng = SeededRandom(state: seed)
        for _ in 0..<runs {
            let n = Int.random(in: 0...maxLength, using: &rng)
            var bytes = [UInt8](repeating: 0, count: n)
            for i in 0..<n { bytes[i] = UInt8.random(in: 0...255, using: &rng) }
            bytes.withUnsafeBytes(body)
        }
    }

    @Test func messagesRandom() {
        sweep(20_000, maxLength: 300, seed: 1) { VhostUserFuzz.message($0) }
        // Well-formed headers with random payloads for every request number.
        var rng = SeededRandom(state: 2)
        for request in UInt32(0)...41 {
            for size in [0, 8, 40, 72, 264, 300] {
                var m = [UInt8(Int.random(in: 0...9, using: &rng))]
                m += VhostUserEncoder.message(request: request, flags: 1 | (rng.next() & 1 == 0 ? 8 : 0),
                                              payload: (0..<size).map { _ in UInt8.random(in: 0...255, using: &rng) })
                m.withUnsafeBytes { VhostUserFuzz.message($0) }
            }
        }
    }

    @Test func memoryTablesRandom() {
        sweep(20_000, maxLength: 400, seed: 3) { VhostUserFuzz.memoryTable($0) }
        // Small, mostly valid tables.
        var rng = SeededRandom(state: 4)
        for _ in 0..<5_000 {
            var b: [UInt8] = [UInt8.random(in: 1...3, using: &rng)]
            for _ in 0..<Int(b[0]) {
                for v in [UInt64.random(in: 0...0x10000, using: &rng), UInt64.random(in: 0...0x8000, using: &rng),
                          UInt64.random(in: 0...0x10000, using: &rng), UInt64.random(in: 0...0x100, using: &rng),
                          UInt64.random(in: 0...0x10000, using: &rng)] {
                    withUnsafeBytes(of: v.littleEndian) { b += $0 }
                }
            }
            for v in [UInt64.random(in: 0...0x20000, using: &rng), UInt64.random(in: 0...0x2000, using: &rng)] {
                withUnsafeBytes(of: v.littleEndian) { b += $0 }
            }
            b.withUnsafeBytes { VhostUserFuzz.memoryTable($0) }
        }
    }

    @Test func descriptorRingsRandom() {
        sweep(300, maxLength: 0x4100, seed: 5) { VhostUserFuzz.descriptorChains($0) }
        // Rings whose descriptors mostly point inside memory: small addresses, small lengths.
        var rng = SeededRandom(state: 6)
        for _ in 0..<300 {
            var mem = [UInt8](repeating: 0, count: 0x4000)
            let size = 1 << Int.random(in: 0...8, using: &rng)
            for d in 0..<size {
                let o = 0x400 + 16 * d
                let addr = 0x1_0000_0000 + UInt64.random(in: 0...0x11000, using: &rng)
                withUnsafeBytes(of: addr.littleEndian) { mem.replaceSubrange(o..<o + 8, with: $0) }
                let len = UInt32.random(in: 0...0x2000, using: &rng)
                withUnsafeBytes(of: len.littleEndian) { mem.replaceSubrange(o + 8..<o + 12, with: $0) }
                mem[o + 12] = UInt8.random(in: 0...7, using: &rng)
                mem[o + 14] = UInt8.random(in: 0...UInt8(size - 1), using: &rng)
            }
            let avail = UInt16.random(in: 0...UInt16(size), using: &rng)
            withUnsafeBytes(of: avail.littleEndian) { mem.replaceSubrange(2..<4, with: $0) }
            for k in 0..<size { mem[4 + 2 * k] = UInt8.random(in: 0...UInt8(size - 1), using: &rng) }
            let input = [UInt8(size.trailingZeroBitCount), UInt8.random(in: 0...7, using: &rng)] + mem
            input.withUnsafeBytes { VhostUserFuzz.descriptorChains($0) }
        }
    }

    /// The multi-queue session target: its seed corpus (whole MQ conversations: two pairs
    /// enabled and disabled, indexes past the pairs, the second pair alone), then byte-flipped,
    /// cut and spliced variants of them.
    @Test func sessionsFromSeedsAndMutations() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus/FuzzVhostUserSession")
        let seeds = try FileManager.default.contentsOfDirectory(atPath: dir.path).sorted()
            .map { try [UInt8](Data(contentsOf: dir.appendingPathComponent($0))) }
        #expect(seeds.count >= 3)
        for seed in seeds { _ = seed.withUnsafeBytes { VhostUserFuzz.session($0) } }
        var rng = SeededRandom(state: 7)
        for _ in 0..<1_500 {
            var b = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
            switch Int.random(in: 0...2, using: &rng) {
            case 0: for _ in 0..<Int.random(in: 1...8, using: &rng) { b[Int.random(in: 0..<b.count, using: &rng)] = UInt8.random(in: 0...255, using: &rng) }
            case 1: b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng)))
            default:
                let other = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
                b = Array(b.prefix(Int.random(in: 0...b.count, using: &rng))) + Array(other.suffix(Int.random(in: 0...other.count, using: &rng)))
            }
            _ = b.withUnsafeBytes { VhostUserFuzz.session($0) }
        }
    }

    /// The seed that sets up both pairs really starts their rings (the session reaches the
    /// state a multi-queue device is in, not just the refusals).
    @Test func sessionSeedStartsBothPairs() throws {
        let dir = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent()
            .deletingLastPathComponent().appendingPathComponent("Fuzz/Corpus/FuzzVhostUserSession")
        let seed = try [UInt8](Data(contentsOf: dir.appendingPathComponent("two-pairs-enable-disable")))
        let started = seed.withUnsafeBytes { VhostUserFuzz.session($0) }
        #expect(Set(started) == [0, 1, 2, 3], "rings handed to the host: \(started)")
    }
}
