// SpanningTreeConfig: a bridge's spanning-tree keys (`stp`, `stp-priority`, `stp-hello-time`,
// `stp-forward-delay`, `stp-max-age`, `stp-port-cost` in its `[[bridges]]` table), read into
// the Handlers module's `SpanningTreeSettings` with the ranges 802.1D allows and the Linux
// bridge accepts. The spanning tree gates the learning switch, so a bridge with `stp` on must
// run one.
import Handlers

extension ConfigParser {
    /// The spanning-tree keys of bridge table `r`; nil when `stp` is absent or "off".
    static func parseSpanningTree(_ r: inout KeyReader) -> SpanningTreeSettings? {
        let mode = r.string("stp") ?? "off"
        var s = SpanningTreeSettings()
        if let p = r.int("stp-priority", in: 0...61440) {
            if p % 4096 != 0 { r.fail("stp-priority", "\(p) is not a multiple of 4096 (802.1D: 0, 4096, ..., 61440)") } else { s.priority = UInt16(p) }
        }
        if let h = r.number("stp-hello-time", in: 1...10) { s.helloTime = h }
        if let f = r.number("stp-forward-delay", in: 4...30) { s.forwardDelay = f }
        if let m = r.number("stp-max-age", in: 6...40) { s.maxAge = m }
        if let c = r.int("stp-port-cost", in: 1...200_000_000) { s.portCost = UInt32(c) }
        // 802.1D 8.10.2: 2 x (forward delay - 1) >= max age >= 2 x (hello time + 1).
        if s.maxAge > 2 * (s.forwardDelay - 1) {
            r.fail("stp-max-age", "\(s.maxAge) s is more than 2 x (stp-forward-delay - 1) = \(2 * (s.forwardDelay - 1)) s (802.1D 8.10.2)")
        } else if s.maxAge < 2 * (s.helloTime + 1) {
            r.fail("stp-max-age", "\(s.maxAge) s is less than 2 x (stp-hello-time + 1) = \(2 * (s.helloTime + 1)) s (802.1D 8.10.2)")
        }
        switch mode {
        case "off": return nil
        case "stp": return s
        case "rstp":
            r.fail("stp", "'rstp' (802.1w) is not implemented yet; 'stp' runs 802.1D, which RSTP bridges and the Linux bridge interoperate with")
            return nil
        default:
            r.fail("stp", "must be 'stp' or 'off', not '\(mode)'")
            return nil
        }
    }
}
