// ConfigMutationTests: the parser alone, fed mutated copies of the example files (a bounded,
// seeded fuzz run that needs no root and no OS): every input either parses or is refused with
// issues naming the file; nothing crashes or hangs.
import Foundation
import Testing
@testable import Config

/// SplitMix64: reproducible mutations from a seed.
struct SeededGenerator: RandomNumberGenerator {
    var state: UInt64
    mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

@Suite struct ConfigMutations {
    static let pieces: [[UInt8]] = ["[[bridges]]\n", "[[bridges.ports]]\n", "kind = \"vm\"\n", "pipeline = [\"filter\"]\n",
                                    "\"", "=", "[", "]", "\n", "0x", "-1", "99999999999999999999", "\u{0}", "é", "#",
                                    "rules = [\"deny tcp\"]\n", "[bridges.filter]\n", "parent = \"\"\n"].map { Array($0.utf8) }

    @Test func mutatedExamplesParseOrAreRefused() throws {
        var seeds: [[UInt8]] = []
        let dir = ConfigParsing.examples.path
        for f in try FileManager.default.contentsOfDirectory(atPath: dir).sorted() where f.hasSuffix(".toml") {
            seeds.append(Array(try String(contentsOfFile: dir + "/" + f, encoding: .utf8).utf8))
        }
        // A longer or different run: TBT_CONFIG_FUZZ_RUNS=100000 TBT_CONFIG_FUZZ_SEED=7 (and
        // TBT_CONFIG_FUZZ_DUMP=FILE to keep the input being parsed, for a crash).
        let env = ProcessInfo.processInfo.environment
        let runs = env["TBT_CONFIG_FUZZ_RUNS"].flatMap { Int($0) } ?? 1000
        var rng = SeededGenerator(state: env["TBT_CONFIG_FUZZ_SEED"].flatMap { UInt64($0) } ?? 0x7462_7463_6667)
        var parsed = 0, refused = 0
        for _ in 0..<runs {
            var bytes = seeds[Int.random(in: 0..<seeds.count, using: &rng)]
            for _ in 0..<Int.random(in: 1...4, using: &rng) {
                let at = Int.random(in: 0...bytes.count, using: &rng)
                switch Int.random(in: 0..<4, using: &rng) {
                case 0: bytes.insert(contentsOf: Self.pieces.randomElement(using: &rng)!, at: at)
                case 1: if at < bytes.count { bytes.removeSubrange(at..<min(bytes.count, at + Int.random(in: 1...16, using: &rng))) }
                case 2: if at < bytes.count { bytes[at] = UInt8.random(in: 0...255, using: &rng) }
                default: bytes = Array(bytes.prefix(at))
                }
            }
            let text = String(decoding: bytes, as: UTF8.self)
            if let dump = ProcessInfo.processInfo.environment["TBT_CONFIG_FUZZ_DUMP"] {
                try text.write(toFile: dump, atomically: false, encoding: .utf8)
            }
            do {
                _ = try ConfigParser.parse(text, file: "m.toml")
                parsed += 1
            } catch let e as ConfigError {
                refused += 1
                #expect(!e.issues.isEmpty && e.issues.allSatisfy { $0.description.hasPrefix("m.toml: ") })
            }
        }
        #expect(parsed + refused == runs && refused > 0)
    }
}

/// Regressions from the mutation run: toml++ 3 asserts on a table header without a key.
@Suite struct TOMLLibraryGuards {
    @Test(arguments: ["[#\n", "[\n", "[", "[[ =\n", "x = 1\n  [ ]\n", "[[bridges]]\n[[\n"])
    func headerWithoutAKeyIsRefusedNotAsserted(_ text: String) {
        let out = issues(text)
        #expect(out.count == 1 && out[0].contains("table header"), "\(out)")   // refused (by TOMLPreflight or by the library's own error), never an abort
    }

    @Test func bracketsInsideValuesAndStringsAreNoHeaders() {
        // A nested array on its own line, a multi-line string with '[' lines, a comment: no false alarm.
        let out = issues("""
            [[bridges]]
            pipeline = [
            ]
            [bridges.filter]
            rules = [
              "allow arp", # [ not a header
            ]
            ports = ['''
            [#'''][0:0]
            [[bridges.ports]]
            name = "x"
            """)
        #expect(!out.contains { $0.contains("table header") }, "\(out)")
        #expect(issues("x = [\n[1, 2],\n[#\n]\n").allSatisfy { !$0.contains("table header") })
    }
}
