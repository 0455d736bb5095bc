// The `limit RATE` token bucket at rates and idle periods that overflowed its arithmetic
// (Fuzz/Targets/FuzzFilterRule; the corpus keeps 'limit-100gbit-idle-200s').
import Testing
@testable import Handlers

@Suite struct TokenBucketTests {
    @Test func aHighRateAfterALongIdlePeriodRefillsToTheBurst() {
        // 100 Gbit/s: 200 s without a matching frame is 2e19 millionths of a token, past
        // UInt64; before, the worker trapped converting it.
        let b = TokenBucket(.bitsPerSecond(100e9))
        #expect(b.take(bytes: 1514, now: 1_000_000_000))
        #expect(b.take(bytes: 1514, now: 201_000_000_000))
        #expect(b.take(bytes: 1514, now: 201_000_000_000 + 3_600_000_000_000))
    }

    @Test func absurdRatesDoNotTrap() {
        // 'limit 1e300gbit' parses (a finite number times 1e9 is infinite); before, the burst
        // (rate x 1e6) trapped converting to UInt64 when the rule was compiled.
        for rate: FilterRate in [.bitsPerSecond(.infinity), .packetsPerSecond(1e300), .packetsPerSecond(1e14)] {
            let b = TokenBucket(rate)
            #expect(b.burst > 0)
            #expect(b.take(bytes: 64, now: 1) && b.take(bytes: 64, now: UInt64.max / 2))
        }
        #expect(throws: Never.self) { _ = try FilterRule(parsing: "limit 1e300gbit udp") }
    }
}
