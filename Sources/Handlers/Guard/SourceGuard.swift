// SourceGuard: anti-spoofing for ports that stand for one machine (VM attachments, VM ports in
// a switch). Per guarded port: the source MAC must be the port's assigned MAC (the same check
// as the filter's `@anti-spoofing` builtin, shared through BuiltinMatchers), and optionally the
// ARP sender, IPv4 source and IPv6 source must be one of the configured addresses. A failing
// frame is dropped with a per-reason DropReason (counted per port by the engine) and counted
// here per reason.
#if canImport(Glibc)
import Glibc
#endif
import Frames

public final class SourceGuard: FrameHandler, @unchecked Sendable {
    /// What one port may send.
    public struct Policy: Sendable, Equatable {
        /// Check the source MAC (and the ARP sender MAC) against the port's assigned MAC.
        public var checkMAC: Bool
        /// The MAC to enforce; nil: the port's `PortSettings.assignedMAC`.
        public var mac: MACAddress?
        /// nil: no IP checks. Else ARP sender / IPv4 / IPv6 sources must be among these (plus
        /// 0.0.0.0 for DHCP and ARP probes, :: for duplicate address detection, and the MAC's
        /// EUI-64 link-local address).
        public var addresses: SourceAddresses?
        public init(checkMAC: Bool = true, mac: MACAddress? = nil, addresses: SourceAddresses? = nil) {
            self.checkMAC = checkMAC; self.mac = mac; self.addresses = addresses
        }
    }

    public let name = "source-guard"
    public static let maxAddressesPerFamily = 8
    static let arpReason = DropReason.register("spoofed-arp")
    static let ipv4Reason = DropReason.register("spoofed-ipv4")
    static let ipv6Reason = DropReason.register("spoofed-ipv6")
    static let counterNames = ["mac", "arp", "ipv4", "ipv6"]

    private var policies: [String: Policy]
    private var lastPorts = PortTable.empty
    private let table: SnapshotPublisher<GuardTable>
    // One row of 8 counters per worker (4 used: mac, arp, ipv4, ipv6), so no two workers share a line.
    private static let workers = 64
    private let dropped: UnsafeMutablePointer<UInt64>

    /// `policies`: by port name; ports not named are not checked.
    public init(policies: [String: Policy]) {
        self.policies = policies
        table = SnapshotPublisher(GuardTable(policies: policies, ports: .empty))
        dropped = .allocate(capacity: Self.workers * 8)
        dropped.initialize(repeating: 0, count: Self.workers * 8)
    }
    deinit { dropped.deallocate() }

    /// Control thread: replaces the policies (ports added or removed by a reload).
    public func setPolicies(_ p: [String: Policy]) {
        policies = p
        table.publish(GuardTable(policies: p, ports: lastPorts))
    }

    public func portsChanged(_ ports: PortTable) {
        lastPorts = ports
        table.publish(GuardTable(policies: policies, ports: ports))
    }

    public func handle(_ frame: inout Frame, context: HandlerContext) -> Verdict {
        let r = table.withCurrent { $0.check(frame) }
        if r < 0 { return .continue }
        dropped[(context.worker & (Self.workers - 1)) * 8 + r] &+= 1
        switch r {
        case 0: return .drop(.spoofed)
        case 1: return .drop(Self.arpReason)
        case 2: return .drop(Self.ipv4Reason)
        default: return .drop(Self.ipv6Reason)
        }
    }

    public func counters() -> [HandlerCounter] {
        Self.counterNames.enumerated().map { i, n in
            var sum: UInt64 = 0
            for w in 0..<Self.workers { sum &+= dropped[w * 8 + i] }
            return HandlerCounter("spoofed_dropped", sum, labels: ["check": n])
        }
    }
}

/// IPv4 and IPv6 addresses a guarded port may use as source.
public struct SourceAddresses: Sendable, Equatable {
    /// Host-order IPv4 addresses.
    public var ipv4: [UInt32] = []
    /// IPv6 addresses as (high, low) 64-bit halves, host order.
    public var ipv6: [IPv6Address] = []
    public init() {}

    public struct IPv6Address: Sendable, Equatable {
        public var high: UInt64, low: UInt64
        public init(high: UInt64, low: UInt64) { self.high = high; self.low = low }
    }

    /// Parses "198.18.0.10" or "2001:db8::10" and adds it; returns why not, or nil.
    public mutating func add(_ text: String) -> String? {
        var v4 = in_addr()
        if inet_pton(AF_INET, text, &v4) == 1 {
            guard ipv4.count < SourceGuard.maxAddressesPerFamily else { return "at most \(SourceGuard.maxAddressesPerFamily) IPv4 addresses" }
            ipv4.append(UInt32(bigEndian: v4.s_addr))
            return nil
        }
        var v6 = in6_addr()
        if inet_pton(AF_INET6, text, &v6) == 1 {
            guard ipv6.count < SourceGuard.maxAddressesPerFamily else { return "at most \(SourceGuard.maxAddressesPerFamily) IPv6 addresses" }
            let a = withUnsafeBytes(of: &v6) { b in
                IPv6Address(high: b.loadUnaligned(as: UInt64.self).bigEndian, low: b.loadUnaligned(fromByteOffset: 8, as: UInt64.self).bigEndian)
            }
            ipv6.append(a)
            return nil
        }
        return "invalid IP address '\(text)' (expected IPv4 like 198.18.0.10 or IPv6 like 2001:db8::10, no prefix length)"
    }
}

/// The hot path's view: per PortID a slot with the MAC to enforce and the allowed addresses in
/// flat memory (trivially copyable; nothing reference-counted per frame).
final class GuardTable: @unchecked Sendable {
    struct Slot {
        var active = false
        var checkMAC = false
        var checkIP = false
        var mac: UInt64 = 0
        var v4Count: Int32 = 0
        var v6Count: Int32 = 0
    }
    static let perFamily = SourceGuard.maxAddressesPerFamily + 1   // + the EUI-64 link-local
    let slots: UnsafeMutablePointer<Slot>
    let v4: UnsafeMutablePointer<UInt32>
    let v6: UnsafeMutablePointer<UInt64>   // (high, low) pairs

    init(policies: [String: SourceGuard.Policy], ports: PortTable) {
        let n = PortSet.capacity
        slots = .allocate(capacity: n); slots.initialize(repeating: Slot(), count: n)
        v4 = .allocate(capacity: n * Self.perFamily); v4.initialize(repeating: 0, count: n * Self.perFamily)
        v6 = .allocate(capacity: n * Self.perFamily * 2); v6.initialize(repeating: 0, count: n * Self.perFamily * 2)
        for p in ports.ports where Int(p.id.rawValue) < n {
            guard let pol = policies[p.name] else { continue }
            let i = Int(p.id.rawValue)
            var s = Slot(active: true, checkMAC: pol.checkMAC, checkIP: pol.addresses != nil)
            let mac = pol.mac ?? p.assignedMAC
            s.mac = mac?.rawValue ?? 0
            if pol.checkMAC && mac == nil { s.checkMAC = false }
            if let a = pol.addresses {
                for (k, x) in a.ipv4.prefix(SourceGuard.maxAddressesPerFamily).enumerated() { v4[i * Self.perFamily + k] = x }
                s.v4Count = Int32(min(a.ipv4.count, SourceGuard.maxAddressesPerFamily))
                var six = Array(a.ipv6.prefix(SourceGuard.maxAddressesPerFamily))
                if let m = mac { six.append(Self.linkLocal(m)) }
                for (k, x) in six.enumerated() {
                    v6[(i * Self.perFamily + k) * 2] = x.high; v6[(i * Self.perFamily + k) * 2 + 1] = x.low
                }
                s.v6Count = Int32(six.count)
            }
            slots[i] = s
        }
    }
    deinit { slots.deallocate(); v4.deallocate(); v6.deallocate() }

    /// fe80::/64 with the modified EUI-64 interface identifier of `mac`.
    static func linkLocal(_ mac: MACAddress) -> SourceAddresses.IPv6Address {
        let m = mac.rawValue
        let upper = (m >> 24) ^ 0x02_0000        // first three octets, universal/local bit flipped
        let iid = upper << 40 | 0xFF_FE << 24 | (m & 0xFF_FFFF)
        return .init(high: 0xFE80_0000_0000_0000, low: iid)
    }

    /// -1: fine; else the failed check (0 MAC, 1 ARP, 2 IPv4, 3 IPv6).
    @inline(__always)
    func check(_ f: Frame) -> Int {
        let i = Int(f.ingress.rawValue)
        guard i < PortSet.capacity else { return -1 }
        let s = slots[i]
        guard s.active else { return -1 }
        if s.checkMAC && BuiltinMatchers.evaluate(.antiSpoofing, f, assignedMAC: s.mac) == .match { return 0 }
        guard s.checkIP else { return -1 }
        switch BuiltinMatchers.sourceAddress(f) {
        case .none:
            return -1
        case .malformed(check: let c):
            return c
        case .arp(let senderMAC, let ip):
            if s.checkMAC && senderMAC != s.mac { return 1 }
            return ip == 0 || contains4(i, s, ip) ? -1 : 1
        case .ipv4(let ip):
            return ip == 0 || contains4(i, s, ip) ? -1 : 2
        case .ipv6(let high, let low):
            if high == 0 && low == 0 { return -1 }
            var k = 0
            let base = i * Self.perFamily
            while k < Int(s.v6Count) {
                if v6[(base + k) * 2] == high && v6[(base + k) * 2 + 1] == low { return -1 }
                k += 1
            }
            return 3
        }
    }

    @inline(__always)
    private func contains4(_ i: Int, _ s: Slot, _ ip: UInt32) -> Bool {
        var k = 0
        while k < Int(s.v4Count) { if v4[i * Self.perFamily + k] == ip { return true }; k += 1 }
        return false
    }
}
