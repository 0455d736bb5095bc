// Verdict and DropReason: what a handler decides for a frame. Plain values, no allocation.
import Synchronization

/// Why a frame was dropped. Counted per port and per reason by the engine; handlers may
/// register their own reasons at set-up time (`DropReason.register("my-reason")`).
public struct DropReason: Hashable, Sendable, CustomStringConvertible {
    public let rawValue: UInt8
    @inlinable public init(rawValue: UInt8) { self.rawValue = rawValue }

    public static let handler = DropReason(rawValue: 0)        // a handler said drop, no detail
    public static let malformed = DropReason(rawValue: 1)      // shorter than an Ethernet header, bad length
    public static let queueFull = DropReason(rawValue: 2)      // egress transmit queue full
    public static let noDestination = DropReason(rawValue: 3)  // forward to a port that is gone, empty set
    public static let filtered = DropReason(rawValue: 4)       // a filter rule denied it
    public static let spoofed = DropReason(rawValue: 5)        // source address not the port's own
    public static let vlan = DropReason(rawValue: 6)           // VLAN not allowed on ingress/egress port
    public static let isolated = DropReason(rawValue: 7)       // isolated port to isolated port
    public static let tooBig = DropReason(rawValue: 8)         // larger than the egress port accepts, or than the
                                                               // ingress port's max frame (a datagram cut short too)
    public static let rateLimited = DropReason(rawValue: 9)    // token bucket empty
    public static let loop = DropReason(rawValue: 10)          // would leave by its ingress port (no hairpin)
    public static let portDown = DropReason(rawValue: 11)      // egress port not up / not connected
    public static let offload = DropReason(rawValue: 12)       // GSO frame the egress cannot take or segment
    public static let invalidSource = DropReason(rawValue: 13) // source MAC multicast/broadcast or all zero
    public static let truncated = DropReason(rawValue: 14)     // stream peer closed, or stalled and was closed, mid-frame

    static let builtinNames = ["handler", "malformed", "queue-full", "no-destination", "filtered", "spoofed",
                               "vlan", "isolated", "too-big", "rate-limited", "loop", "port-down", "offload",
                               "invalid-source", "truncated"]
    static let firstCustom = 32
    static let customNames = Mutex<[String]>([])

    /// A new reason with a stable name for counters and logs. Call at set-up, not per frame.
    /// Registering the same name twice returns the same reason.
    public static func register(_ name: String) -> DropReason {
        if let i = builtinNames.firstIndex(of: name) { return DropReason(rawValue: UInt8(i)) }
        return customNames.withLock { names in
            if let i = names.firstIndex(of: name) { return DropReason(rawValue: UInt8(firstCustom + i)) }
            precondition(firstCustom + names.count < 256, "too many custom drop reasons")
            names.append(name)
            return DropReason(rawValue: UInt8(firstCustom + names.count - 1))
        }
    }

    /// Every reason in use: built-ins then registered ones.
    public static var all: [DropReason] {
        let custom = customNames.withLock { $0.count }
        return (0..<builtinNames.count).map { DropReason(rawValue: UInt8($0)) }
            + (0..<custom).map { DropReason(rawValue: UInt8(firstCustom + $0)) }
    }

    public var name: String {
        let i = Int(rawValue)
        if i < Self.builtinNames.count { return Self.builtinNames[i] }
        return Self.customNames.withLock { names in
            let c = i - Self.firstCustom
            return c >= 0 && c < names.count ? names[c] : "reason-\(i)"
        }
    }
    public var description: String { name }
}

/// A handler's decision for one frame.
public enum Verdict: Equatable, Sendable {
    /// Drop it, counting `reason` against the ingress port.
    case drop(DropReason)
    /// Send it out of exactly this port (its ingress port too, if that is what the handler means:
    /// hairpin is the handler's decision, not the engine's).
    case forward(PortID)
    /// Send a copy out of each port in the set.
    case forwardSet(PortSet)
    /// Send it out of every port of the bridge except the ingress port.
    case flood
    /// No decision: the next handler in the pipeline decides.
    case `continue`
}
