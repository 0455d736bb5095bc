// FilterRule and its vocabulary: what a filter is configured with. Value types, validated and
// compiled by FrameFilter.replaceRules, never looked at per frame.
import Frames

/// What a rule matches.
public enum FilterMatch: Equatable, Sendable, CustomStringConvertible {
    /// A pcap-filter expression, as tcpdump takes it.
    case expression(String)
    /// A typed rule every VM host needs; it matches the frames that break it.
    case builtin(BuiltinRule)

    public var description: String {
        switch self {
        case .expression(let e): return "\"\(e)\""
        case .builtin(let b): return b.name
        }
    }
}

/// Typed rules. Each matches the *offending* frames (its usual action is `deny`).
public enum BuiltinRule: Equatable, Sendable {
    /// Source MAC is not the ingress port's assigned MAC (ports without one never match).
    case antiSpoofing
    /// Anything but ARP, IPv4 and IPv6 (after VLAN tags).
    case onlyARPAndIP
    /// Frames from or to this MAC.
    case blockMAC(MACAddress)
    /// DHCP server replies from a guest: IPv4 UDP source port 67, IPv6 UDP source port 547.
    case dhcpServerGuard
    /// IPv6 router advertisements (ICMPv6 type 134), extension headers followed.
    case routerAdvertisementGuard

    public var name: String {
        switch self {
        case .antiSpoofing: return "anti-spoofing"
        case .onlyARPAndIP: return "only-arp-and-ip"
        case .blockMAC(let m): return "block-mac \(m)"
        case .dhcpServerGuard: return "dhcp-server-guard"
        case .routerAdvertisementGuard: return "ra-guard"
        }
    }

    /// Parses the config spelling ("anti-spoofing", "block-mac 52:54:00:00:00:01", ...).
    public init?(name: String) {
        let parts = name.split(separator: " ", maxSplits: 1).map(String.init)
        switch parts.first ?? "" {
        case "anti-spoofing": self = .antiSpoofing
        case "only-arp-and-ip", "deny-all-but-arp-ip": self = .onlyARPAndIP
        case "dhcp-server-guard": self = .dhcpServerGuard
        case "ra-guard": self = .routerAdvertisementGuard
        case "block-mac":
            guard parts.count == 2, let m = MACAddress(parts[1]) else { return nil }
            self = .blockMAC(m)
        default: return nil
        }
    }
}

/// A rate for `limit`.
public enum FilterRate: Equatable, Sendable {
    case packetsPerSecond(Double)
    case bitsPerSecond(Double)
}

/// What happens to a frame a rule matches.
public enum FilterAction: Equatable, Sendable {
    /// Stop evaluating; the next handler (e.g. the switch) decides.
    case allow
    /// Drop it (counted as `filtered`).
    case deny
    /// Count it and go on to the next rule.
    case count
    /// Give a copy to this port (by name) and go on to the next rule.
    case mirror(String)
    /// Frames within the rate go on to the next rule; the excess is dropped (`rate-limited`).
    case limit(FilterRate)
}

public struct FilterRule: Equatable, Sendable {
    public var match: FilterMatch
    public var action: FilterAction
    public init(_ match: FilterMatch, _ action: FilterAction) { self.match = match; self.action = action }
    public static func expression(_ e: String, _ action: FilterAction) -> FilterRule { .init(.expression(e), action) }
    public static func builtin(_ b: BuiltinRule, _ action: FilterAction = .deny) -> FilterRule { .init(.builtin(b), action) }
}

/// What a filter does with a frame no rule decided.
public enum FilterPolicy: String, Equatable, Sendable {
    case allow, deny
}

public enum FilterError: Error, Equatable, CustomStringConvertible {
    /// A rule that does not compile: libpcap's message and the rule's position (0-based).
    case compile(expression: String, message: String, position: Int?)
    case invalid(position: Int, reason: String)

    public var description: String {
        switch self {
        case .compile(let e, let m, let p):
            return "\(p.map { "rule \($0) " } ?? "")(\"\(e)\"): \(m)"
        case .invalid(let p, let r):
            return "rule \(p): \(r)"
        }
    }
}
