// FuzzInput: carves libFuzzer's byte string into the values a target needs (a limit, a chunk
// size, a header) and the bytes that remain, so one input drives a whole scenario. Every
// take is bounded by what is left; an exhausted input yields zeros and empty slices.

public struct FuzzInput {
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset = 0

    public init(_ data: UnsafeRawPointer, _ count: Int) {
        bytes = UnsafeRawBufferPointer(start: count > 0 ? data : nil, count: count)
    }

    public var remaining: Int { bytes.count - offset }
    public var isEmpty: Bool { remaining == 0 }

    public mutating func u8() -> UInt8 {
        guard offset < bytes.count else { return 0 }
        defer { offset += 1 }
        return bytes[offset]
    }

    public mutating func u16() -> UInt16 { UInt16(u8()) << 8 | UInt16(u8()) }
    public mutating func u32() -> UInt32 { UInt32(u16()) << 16 | UInt32(u16()) }
    public mutating func bool() -> Bool { u8() & 1 != 0 }

    /// A value in `range`, from as many bytes as it needs.
    public mutating func int(in range: ClosedRange<Int>) -> Int {
        let span = UInt64(range.upperBound - range.lowerBound)
        let raw: UInt64 = span <= 0xFF ? UInt64(u8()) : span <= 0xFFFF ? UInt64(u16()) : UInt64(u32())
        return range.lowerBound + Int(raw % (span + 1))
    }

    /// The next `count` bytes (fewer if the input ends).
    public mutating func take(_ count: Int) -> UnsafeRawBufferPointer {
        let n = max(0, min(count, remaining))
        defer { offset += n }
        return UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + n)])
    }

    /// Everything not taken yet.
    public mutating func rest() -> UnsafeRawBufferPointer { take(remaining) }
}

/// Stops the fuzzer with a message when an invariant of the code under test does not hold
/// (libFuzzer records the input as a crash).
public func fuzzCheck(_ condition: @autoclosure () -> Bool, _ message: @autoclosure () -> String,
                      file: StaticString = #fileID, line: UInt = #line) {
    if !condition() { fatalError("fuzz invariant: \(message())", file: file, line: line) }
}
