// The `tapbridge` command: one subcommand per file in this folder.
import ArgumentParser

@main
struct TapbridgeCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "tapbridge",
        abstract: "macvtap interfaces and an io_uring frame-forwarding core with pluggable Swift handlers.",
        discussion: """
            tapbridge creates macvtap (and macvlan) links, opens their /dev/tapN character devices
            and forwards every Ethernet frame through a pipeline of handlers: a learning switch,
            a filter, a VM backend socket, or your own.

            Start with `tapbridge demo` (a self-contained topology in network namespaces), or
            `tapbridge link add link eth0 type macvtap mode bridge` to manage links like `ip link`.
            """,
        subcommands: [LinkCommand.self, RunCommand.self, DemoCommand.self]
    )
}
