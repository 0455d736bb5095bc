// PortID, PortSet and the per-bridge PortTable that handlers read: the names of the places a
// frame can go. PortSet is a fixed 256-bit set so a verdict never allocates.

/// A port's number within its bridge (0..<PortSet.capacity). Stable while the port is attached.
public struct PortID: Hashable, Comparable, Sendable, CustomStringConvertible {
    public let rawValue: UInt16
    @inlinable public init(_ rawValue: UInt16) { self.rawValue = rawValue }
    @inlinable public init(_ rawValue: Int) { self.rawValue = UInt16(rawValue) }
    public var description: String { "port#\(rawValue)" }
    public static func < (a: PortID, b: PortID) -> Bool { a.rawValue < b.rawValue }
}

/// A set of ports of one bridge, as a fixed bitmap: no allocation, cheap to copy.
public struct PortSet: Equatable, Sendable, Sequence {
    public static let capacity = 256
    @usableFromInline var w0: UInt64 = 0, w1: UInt64 = 0, w2: UInt64 = 0, w3: UInt64 = 0

    @inlinable public init() {}
    public init<S: Sequence>(_ ports: S) where S.Element == PortID {
        for p in ports { insert(p) }
    }

    @inlinable public var isEmpty: Bool { (w0 | w1 | w2 | w3) == 0 }
    @inlinable public var count: Int { w0.nonzeroBitCount + w1.nonzeroBitCount + w2.nonzeroBitCount + w3.nonzeroBitCount }

    @inlinable public func contains(_ p: PortID) -> Bool {
        let bit = UInt64(1) << UInt64(p.rawValue & 63)
        switch p.rawValue >> 6 {
        case 0: return w0 & bit != 0
        case 1: return w1 & bit != 0
        case 2: return w2 & bit != 0
        case 3: return w3 & bit != 0
        default: return false
        }
    }

    @inlinable public mutating func insert(_ p: PortID) {
        let bit = UInt64(1) << UInt64(p.rawValue & 63)
        switch p.rawValue >> 6 {
        case 0: w0 |= bit
        case 1: w1 |= bit
        case 2: w2 |= bit
        case 3: w3 |= bit
        default: break  // out of range: ignored, PortID allocation never hands these out
        }
    }

    @inlinable public mutating func remove(_ p: PortID) {
        let bit = ~(UInt64(1) << UInt64(p.rawValue & 63))
        switch p.rawValue >> 6 {
        case 0: w0 &= bit
        case 1: w1 &= bit
        case 2: w2 &= bit
        case 3: w3 &= bit
        default: break
        }
    }

    @inlinable public func intersection(_ o: PortSet) -> PortSet {
        var r = PortSet(); r.w0 = w0 & o.w0; r.w1 = w1 & o.w1; r.w2 = w2 & o.w2; r.w3 = w3 & o.w3; return r
    }
    @inlinable public func union(_ o: PortSet) -> PortSet {
        var r = PortSet(); r.w0 = w0 | o.w0; r.w1 = w1 | o.w1; r.w2 = w2 | o.w2; r.w3 = w3 | o.w3; return r
    }
    @inlinable public func subtracting(_ o: PortSet) -> PortSet {
        var r = PortSet(); r.w0 = w0 & ~o.w0; r.w1 = w1 & ~o.w1; r.w2 = w2 & ~o.w2; r.w3 = w3 & ~o.w3; return r
    }

    public struct Iterator: IteratorProtocol {
        @usableFromInline var words: (UInt64, UInt64, UInt64, UInt64)
        @usableFromInline var index = 0
        @inlinable init(_ s: PortSet) { words = (s.w0, s.w1, s.w2, s.w3) }
        @inlinable public mutating func next() -> PortID? {
            while index < 4 {
                var w: UInt64
                switch index { case 0: w = words.0; case 1: w = words.1; case 2: w = words.2; default: w = words.3 }
                if w != 0 {
                    let bit = w.trailingZeroBitCount
                    w &= w - 1
                    switch index { case 0: words.0 = w; case 1: words.1 = w; case 2: words.2 = w; default: words.3 = w }
                    return PortID(UInt16(index * 64 + bit))
                }
                index += 1
            }
            return nil
        }
    }
    @inlinable public func makeIterator() -> Iterator { Iterator(self) }
}

/// What a handler knows about one port of its bridge. Immutable; the engine hands handlers a
/// new `PortTable` whenever ports come or go.
public struct PortInfo: Sendable {
    public var id: PortID
    public var name: String
    /// "macvtap", "vm", "tap", ... (informational).
    public var kind: String
    public var vlan: VLANMode
    /// Isolated ports only exchange frames with non-isolated ports (like bridge `isolated on`).
    public var isolated: Bool
    /// Reflective relay: a frame may leave through the port it arrived on (VEPA's external switch).
    public var hairpin: Bool
    /// The MAC a VM attachment is assigned, for anti-spoofing; nil for LAN-facing ports.
    public var assignedMAC: MACAddress?

    public init(id: PortID, name: String, kind: String = "macvtap", vlan: VLANMode = .unaware,
                isolated: Bool = false, hairpin: Bool = false, assignedMAC: MACAddress? = nil) {
        self.id = id; self.name = name; self.kind = kind; self.vlan = vlan
        self.isolated = isolated; self.hairpin = hairpin; self.assignedMAC = assignedMAC
    }
}

/// The ports of one bridge, indexed by PortID. A snapshot: never mutated after creation.
public final class PortTable: Sendable {
    public let ports: [PortInfo]
    /// Every attached port.
    public let members: PortSet
    @usableFromInline let byID: [Int]   // PortID.rawValue -> index into `ports`, -1 if absent

    public init(_ ports: [PortInfo]) {
        self.ports = ports
        self.members = PortSet(ports.map(\.id))
        var map = [Int](repeating: -1, count: (ports.map { Int($0.id.rawValue) }.max() ?? -1) + 1)
        for (i, p) in ports.enumerated() { map[Int(p.id.rawValue)] = i }
        byID = map
    }

    public static let empty = PortTable([])

    @inlinable public subscript(id: PortID) -> PortInfo? {
        let i = Int(id.rawValue)
        guard i < byID.count, byID[i] >= 0 else { return nil }
        return ports[byID[i]]
    }

    public func port(named name: String) -> PortInfo? { ports.first { $0.name == name } }
}
