// `tapbridge link show -s`: a link's IFLA_STATS64 counters, as text laid out like `ip -s link`
// (and `ip -s -s link` for level 2) and as JSON with the keys of `ip -s -j link` (`stats64.rx`,
// `stats64.tx`; level 2 adds the error details of `ip -s -s -j`).
import Netlink

enum LinkStatisticsText {
    /// The lines printed under a link's row, each ending in a newline.
    static func lines(_ l: LinkInfo, level: Int) -> String {
        guard let s = l.statistics else { return "    (the kernel reported no statistics)\n" }
        // (heading, the width ip gives the column at least, value)
        var rx: [(String, Int, UInt64)] = [("bytes", 6, s.rxBytes), ("packets", 7, s.rxPackets), ("errors", 6, s.rxErrors),
                                           ("dropped", 7, s.rxDropped), ("missed", 7, s.rxMissedErrors), ("mcast", 7, s.multicast)]
        if s.rxCompressed != 0 { rx.append(("compressed", 10, s.rxCompressed)) }
        if s.rxNoHandler != 0 { rx.append(("nohandler", 9, s.rxNoHandler)) }
        if s.rxOtherHostDropped != 0 { rx.append(("otherhost", 9, s.rxOtherHostDropped)) }
        var tx: [(String, Int, UInt64)] = [("bytes", 6, s.txBytes), ("packets", 7, s.txPackets), ("errors", 6, s.txErrors),
                                           ("dropped", 7, s.txDropped), ("carrier", 7, s.txCarrierErrors), ("collsns", 7, s.collisions)]
        if s.txCompressed != 0 { tx.append(("compressed", 10, s.txCompressed)) }
        var out = table("RX:", rx)
        if level > 1 {
            out += table("RX errors:", [("length", 7, s.rxLengthErrors), ("crc", 6, s.rxCRCErrors), ("frame", 7, s.rxFrameErrors),
                                        ("fifo", 7, s.rxFIFOErrors), ("overrun", 7, s.rxOverErrors)])
        }
        out += table("TX:", tx)
        if level > 1 {
            out += table("TX errors:", [("aborted", 7, s.txAbortedErrors), ("fifo", 6, s.txFIFOErrors), ("window", 7, s.txWindowErrors),
                                        ("heartbt", 7, s.txHeartbeatErrors), ("transns", 7, UInt64(l.carrierChanges ?? 0))])
        }
        return out
    }

    /// A heading line after `label` and a line of right-aligned numbers under it, indented by
    /// four spaces; a column widens for a number longer than its width.
    static func table(_ label: String, _ columns: [(String, Int, UInt64)]) -> String {
        var head = "    " + label, values = "    " + String(repeating: " ", count: label.count)
        for (title, minimum, value) in columns {
            let v = String(value)
            let width = max(minimum, title.count, v.count)
            head += " " + String(repeating: " ", count: width - title.count) + title
            values += " " + String(repeating: " ", count: width - v.count) + v
        }
        return head + "\n" + values + "\n"
    }

    /// `stats64` as `ip -s -j` (level 1) or `ip -s -s -j` (level 2) writes it.
    static func json(_ s: LinkStatistics, level: Int, carrierChanges: UInt32?) -> [String: Any] {
        var rx: [String: Any] = ["bytes": s.rxBytes, "packets": s.rxPackets, "errors": s.rxErrors, "dropped": s.rxDropped,
                                 "over_errors": s.rxOverErrors, "multicast": s.multicast]
        var tx: [String: Any] = ["bytes": s.txBytes, "packets": s.txPackets, "errors": s.txErrors, "dropped": s.txDropped,
                                 "carrier_errors": s.txCarrierErrors, "collisions": s.collisions]
        if s.rxCompressed != 0 { rx["compressed"] = s.rxCompressed }
        if s.txCompressed != 0 { tx["compressed"] = s.txCompressed }
        if level > 1 {
            rx["length_errors"] = s.rxLengthErrors; rx["crc_errors"] = s.rxCRCErrors; rx["frame_errors"] = s.rxFrameErrors
            rx["fifo_errors"] = s.rxFIFOErrors; rx["missed_errors"] = s.rxMissedErrors
            if s.rxNoHandler != 0 { rx["nohandler"] = s.rxNoHandler }
            if s.rxOtherHostDropped != 0 { rx["otherhost"] = s.rxOtherHostDropped }
            tx["aborted_errors"] = s.txAbortedErrors; tx["fifo_errors"] = s.txFIFOErrors
            tx["window_errors"] = s.txWindowErrors; tx["heartbeat_errors"] = s.txHeartbeatErrors
            if let c = carrierChanges { tx["carrier_changes"] = Int(c) }
        }
        return ["rx": rx, "tx": tx]
    }
}
