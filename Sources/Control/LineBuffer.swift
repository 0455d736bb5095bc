// LineBuffer: splits the control socket's byte stream into lines, bounded by a limit. Owns the
// bytes received but not yet handed out as lines, and nothing else (ControlServer and
// ControlClient read the socket; ControlLine decodes a line).
//
// Linear in the bytes received, whatever a client sends: a line is handed out by moving a read
// offset (the consumed front is dropped only once it is at least half the storage, so each byte
// moves at most once on average), and the search for a newline resumes where the previous one
// stopped instead of rescanning everything pending. So many requests pipelined in one write, or
// one long line trickled a byte at a time, cost O(bytes) and not O(bytes²).
// Portable: no OS calls.

/// Splits a byte stream into lines, refusing a line longer than `limit` (newline excluded).
public struct LineBuffer {
    public let limit: Int
    /// Bytes received; those before `start` were handed out already.
    private var storage: [UInt8] = []
    /// Where the pending (not yet handed out) bytes begin.
    private var start = 0
    /// How far past `start` the pending bytes are known to hold no newline.
    private var scanned = 0
    /// Bytes compared or moved so far: tests check the work stays linear in what was received.
    internal private(set) var work = 0

    public init(limit: Int = ControlProtocol.maxRequestBytes) { self.limit = limit }

    public enum Next: Equatable { case line([UInt8]), needMore, tooLong }

    public mutating func append(_ bytes: some Collection<UInt8>) { storage.append(contentsOf: bytes) }

    /// The next complete line, `needMore`, or `tooLong` once the pending line passed the limit.
    public mutating func next() -> Next {
        let pending = storage.count - start
        // A newline further than `limit` bytes in means too long, so the search never looks past
        // byte `limit` of the pending line (and never looks at a byte twice).
        let searchEnd = start + min(pending, limit + 1)
        var at = start + scanned
        while at < searchEnd, storage[at] != 0x0A { at += 1 }
        work += max(0, at - (start + scanned))
        guard at < searchEnd else {
            scanned = max(scanned, searchEnd - start)
            return pending > limit ? .tooLong : .needMore
        }
        var end = at
        if end > start, storage[end - 1] == 0x0D { end -= 1 }
        let line = Array(storage[start..<end])
        work += end - start
        start = at + 1
        scanned = 0
        compactIfHalfConsumed()
        return .line(line)
    }

    /// Bytes received after the last complete line.
    public var remainder: [UInt8] { Array(storage[start...]) }

    /// Drops the consumed front once it is at least half of the storage: the bytes moved are
    /// fewer than the bytes consumed since the last compaction, so the total stays linear.
    private mutating func compactIfHalfConsumed() {
        if start == storage.count {
            storage.removeAll(keepingCapacity: storage.capacity <= 2 * max(limit, 4096))
            start = 0
        } else if start >= storage.count - start {
            work += storage.count - start
            storage.removeSubrange(..<start)
            start = 0
        }
    }
}
