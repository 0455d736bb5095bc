// SpanningTreeConfig: a bridge's spanning-tree keys (`stp`, `stp-priority`, `stp-hello-time`,
// `stp-forward-delay`, `stp-max-age`, `stp-port-cost`, and for `stp = "rstp"`
// `stp-tx-hold-count` and `stp-migrate-time`, in its `[[bridges]]` table) and a port's RSTP keys
// (`stp-edge`, `stp-auto-edge`, `stp-point-to-point` in `[[bridges.ports]]`), read into
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
        if let t = r.int("stp-tx-hold-count", in: 1...10) { s.txHoldCount = t }
        if let m = r.number("stp-migrate-time", in: 1...10) { s.migrateTime = m }
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
            s.rapid = true
            return s
        default:
            r.fail("stp", "must be 'rstp', 'stp' or 'off', not '\(mode)'")
            return nil
        }
    }
}

extension ConfigParser {
    /// A port's RSTP keys (read on every port; used only on a bridge with `stp = "rstp"`).
    static func parseSpanningTreePortOptions(_ r: inout KeyReader) -> SpanningTreePortOptions {
        var o = SpanningTreePortOptions()
        if let e = r.bool("stp-edge") { o.adminEdge = e }
        if let a = r.bool("stp-auto-edge") { o.autoEdge = a }
        if let p = r.bool("stp-point-to-point") { o.pointToPoint = p }
        return o
    }
}
