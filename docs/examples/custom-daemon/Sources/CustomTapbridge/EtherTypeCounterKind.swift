// EtherTypeCounterKind: how a configuration file spells an EtherTypeCounter.
//
//   [[bridges]]
//   pipeline = ["ethertype-counter", "learning-switch"]
//   [bridges.ethertype-counter]
//   watch = ["0x0800", "0x0806", "0x86dd"]   # counted one by one; the rest counts as "other"
//   block = "0x86dd"                          # dropped (and counted); leave out to drop nothing
//
// Mistakes are reported like any other key's: `FILE: bridges[0].ethertype-counter.block: ...`.
import EtherTypeCounter
import TapbridgeCLI

struct EtherTypeCounterSettings: HandlerSettings, Equatable {
    var watched: [UInt16] = [EtherType.ipv4, EtherType.arp, EtherType.ipv6]
    var blocked: UInt16?
}

enum EtherTypeCounterKind {
    static let kind = HandlerKind(
        name: "ethertype-counter",
        parse: { keys -> EtherTypeCounterSettings in
            var s = EtherTypeCounterSettings()
            if let list = keys.stringArray("watch") {
                s.watched = []
                for (i, text) in list.enumerated() {
                    if let t = etherType(text) { s.watched.append(t) } else { keys.fail("watch[\(i)]", invalid(text)) }
                }
            }
            if let text = keys.string("block") {
                if let t = etherType(text) { s.blocked = t } else { keys.fail("block", invalid(text)) }
            }
            return s
        },
        make: { s, _ in EtherTypeCounter(watching: s.watched, blocking: s.blocked) })

    /// "0x86dd" (or "86dd") as an EtherType; nil if it is none (at least 0x0600).
    static func etherType(_ text: String) -> UInt16? {
        let hex = text.hasPrefix("0x") || text.hasPrefix("0X") ? String(text.dropFirst(2)) : text
        guard let v = UInt16(hex, radix: 16), v >= 0x0600 else { return nil }
        return v
    }

    static func invalid(_ text: String) -> String {
        "'\(text)' is no EtherType (expected hex like \"0x86dd\", at least 0x0600)"
    }
}
