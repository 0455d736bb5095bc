// ReconnectBackoff: how often a client-mode VM port retries a QEMU that is not there (yet).
// Plain arithmetic, no clock: the port asks for the next delay and keeps its own deadline.

/// Client-mode reconnect delays: doubling from `initial` to `maximum`, reset after a successful connect.
public struct ReconnectBackoff: Sendable {
    public let initialMilliseconds: Int
    public let maximumMilliseconds: Int
    public private(set) var nextMilliseconds: Int
    public init(initialMilliseconds: Int = 50, maximumMilliseconds: Int = 2000) {
        self.initialMilliseconds = max(1, initialMilliseconds)
        self.maximumMilliseconds = max(self.initialMilliseconds, maximumMilliseconds)
        nextMilliseconds = self.initialMilliseconds
    }
    /// The delay to wait before the next attempt; each call doubles the following one up to the maximum.
    public mutating func failed() -> Int {
        let d = nextMilliseconds
        nextMilliseconds = min(maximumMilliseconds, nextMilliseconds * 2)
        return d
    }
    public mutating func succeeded() { nextMilliseconds = initialMilliseconds }
}
