// LinkStatistics: a link's counters as the kernel reports them in IFLA_STATS64 (struct
// rtnl_link_stats64), decoded field by field with each read bounded by the attribute's length:
// an older kernel sends fewer fields, a newer one more, a malformed reply any length at all.
// Fields the attribute does not hold read as 0, bytes past the known fields are ignored.

/// struct rtnl_link_stats64, in the kernel's field order (include/uapi/linux/if_link.h).
public struct LinkStatistics: Sendable, Equatable {
    public var rxPackets: UInt64 = 0
    public var txPackets: UInt64 = 0
    public var rxBytes: UInt64 = 0
    public var txBytes: UInt64 = 0
    public var rxErrors: UInt64 = 0
    public var txErrors: UInt64 = 0
    public var rxDropped: UInt64 = 0
    public var txDropped: UInt64 = 0
    public var multicast: UInt64 = 0
    public var collisions: UInt64 = 0
    public var rxLengthErrors: UInt64 = 0
    public var rxOverErrors: UInt64 = 0
    public var rxCRCErrors: UInt64 = 0
    public var rxFrameErrors: UInt64 = 0
    public var rxFIFOErrors: UInt64 = 0
    public var rxMissedErrors: UInt64 = 0
    public var txAbortedErrors: UInt64 = 0
    public var txCarrierErrors: UInt64 = 0
    public var txFIFOErrors: UInt64 = 0
    public var txHeartbeatErrors: UInt64 = 0
    public var txWindowErrors: UInt64 = 0
    public var rxCompressed: UInt64 = 0
    public var txCompressed: UInt64 = 0
    public var rxNoHandler: UInt64 = 0
    public var rxOtherHostDropped: UInt64 = 0

    /// The number of 64-bit fields this type knows (rtnl_link_stats64 in Linux 6.18).
    public static let knownFields = 25

    public init() {}

    /// Decodes IFLA_STATS64's payload. nil when it holds less than the four basic counters
    /// (packets and bytes each way): nothing a kernel sends, so not worth showing as zeros.
    public init?(stats64 payload: UnsafeRawBufferPointer) {
        let available = min(payload.count / 8, Self.knownFields)
        guard available >= 4 else { return nil }
        func field(_ i: Int) -> UInt64 {
            i < available ? payload.loadUnaligned(fromByteOffset: i * 8, as: UInt64.self) : 0   // host order, as sent
        }
        rxPackets = field(0); txPackets = field(1); rxBytes = field(2); txBytes = field(3)
        rxErrors = field(4); txErrors = field(5); rxDropped = field(6); txDropped = field(7)
        multicast = field(8); collisions = field(9)
        rxLengthErrors = field(10); rxOverErrors = field(11); rxCRCErrors = field(12)
        rxFrameErrors = field(13); rxFIFOErrors = field(14); rxMissedErrors = field(15)
        txAbortedErrors = field(16); txCarrierErrors = field(17); txFIFOErrors = field(18)
        txHeartbeatErrors = field(19); txWindowErrors = field(20)
        rxCompressed = field(21); txCompressed = field(22); rxNoHandler = field(23)
        rxOtherHostDropped = field(24)
    }
}
