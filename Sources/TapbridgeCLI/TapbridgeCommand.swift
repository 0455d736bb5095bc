// The `tapbridge` command: one subcommand per file in this folder. A library, so a custom daemon
// (docs/handlers.md) registers its handler kinds and then calls `TapbridgeCommand.main()`.
import ArgumentParser
import Foundation

public struct TapbridgeCommand: ParsableCommand {
    public init() {}

    public static let configuration = CommandConfiguration(
        commandName: "tapbridge",
        abstract: "macvtap interfaces and an io_uring frame-forwarding core with pluggable Swift handlers.",
        discussion: """
            tapbridge creates macvtap (and macvlan) links, opens their /dev/tapN character devices and forwards every Ethernet frame through a pipeline of handlers: a learning switch, a filter, a VM backend socket, or your own.

            Start with `tapbridge demo` (a self-contained topology in network namespaces), run a bridge with `tapbridge run --config FILE` (docs/config.md), or manage links like `ip link` with `tapbridge link add link eth0 type macvtap mode bridge` (`tapbridge -n NS -s -j link show` as `ip -n NS -s -j link show`; see `tapbridge link --help`).

            A running daemon answers on its control socket (/run/tapbridge/control.sock; --control PATH or $TAPBRIDGE_CONTROL elsewhere):
              tapbridge ports                      ports, links, MACs, state
              tapbridge stats [PORT] [--json]      frames, bytes, drops by reason
              tapbridge top [--once]               live frames/s, bits/s, drops
              tapbridge fdb [BRIDGE]               learned and static MACs; fdb add|del
              tapbridge mdb [BRIDGE] [--json]      multicast groups (IGMP/MLD snooping), router ports
              tapbridge port add|del NAME ...      attach/detach a port at run time
              tapbridge filter list|replace        live filter rules
              tapbridge capture PORT -w - | tcpdump -n -r -    frames to pcapng/pcap
              tapbridge config check FILE          validate a file (no daemon needed)
            The protocol (JSON lines) is in docs/control-api.md.
            """,
        subcommands: [LinkCommand.self, RunCommand.self, DemoCommand.self, PortsCommand.self, StatsCommand.self, TopCommand.self,
                      FDBCommand.self, MDBCommand.self, SpanningTreeCommand.self, PortCommand.self, FilterCommand.self, ImpairCommand.self, CaptureCommand.self, ConfigCommand.self]
    )

    /// Exit status: 0 success, 1 operational error (message on stderr), 2 usage error.
    /// ArgumentParser's own usage status is 64 (EX_USAGE); we keep iproute2's convention.
    public static func main() {
        do {
            var command = try parseAsRoot(GlobalOptions.hoist(Array(CommandLine.arguments.dropFirst())))
            try command.run()
        } catch {
            let code = exitCode(for: error)
            if code == .validationFailure {
                FileHandle.standardError.write(Data(("Error: " + message(for: error) + " (see --help)\n").utf8))
                Foundation.exit(2)
            }
            exit(withError: error)
        }
    }
}
