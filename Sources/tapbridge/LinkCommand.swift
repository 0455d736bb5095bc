// `tapbridge link`: macvtap/macvlan management mirroring `ip link`.
import ArgumentParser

struct LinkCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "link", abstract: "Create, change, show and delete macvtap/macvlan links (like `ip link`).")
}
