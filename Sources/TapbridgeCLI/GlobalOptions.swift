// Global options written before the subcommand, the order iproute2 users type them
// (`ip -n NS -s -j link show`): `tapbridge [-n NS] [-s]... [-j] [-d] link SUBCOMMAND ...`, and
// the same written between `link` and its subcommand. They are moved behind the subcommand, where
// ArgumentParser reads them as that subcommand's own options (`--netns`, `-s`, `--json`); only
// the `link` subcommands touch links, so before any other subcommand they are a usage error.
import ArgumentParser

enum GlobalOptions {
    /// The subcommands of `link` that print JSON (take `--json`) and statistics (take `-s`).
    static let jsonSubcommands: Set<String> = ["show", "list", "ls", "monitor"]
    static let statsSubcommands: Set<String> = ["show", "list", "ls"]

    /// `args` (without the program name) with leading global options moved behind the link
    /// subcommand; unchanged when there are none.
    static func hoist(_ args: [String]) throws -> [String] {
        var rest = args[...]
        var netns: String?, stats = 0, json = false, seen: [String] = []

        /// Consumes global options at the front of `rest`.
        func takeOptions() throws {
            while let word = rest.first {
                switch word {
                case "-n", "--netns", "-netns":
                    rest.removeFirst()
                    guard let ns = rest.first, !ns.hasPrefix("-") else {
                        throw ValidationError("'\(word)' needs a network namespace (a name under /run/netns, or a pid)")
                    }
                    netns = ns
                    rest.removeFirst()
                case _ where word.hasPrefix("--netns="):
                    netns = String(word.dropFirst("--netns=".count))
                    rest.removeFirst()
                case "-s", "-stats", "-statistics", "--stats": stats += 1; rest.removeFirst()
                case "-j", "-json", "--json": json = true; rest.removeFirst()
                case "-d", "-details", "--details": rest.removeFirst()   // tapbridge always shows details
                default: return
                }
                seen.append(word)
            }
        }

        try takeOptions()
        let leading = !seen.isEmpty
        guard let command = rest.first else {
            if leading { throw ValidationError("'\(seen[0])' must be followed by a subcommand, as in `tapbridge -n NS link show`") }
            return args
        }
        guard command == "link" else {
            if leading {
                throw ValidationError("'\(seen[0])' before the subcommand applies to `tapbridge link ...` (the subcommands that "
                                      + "touch links), not to `\(command)`")
            }
            return args
        }
        rest.removeFirst()
        try takeOptions()
        guard !seen.isEmpty else { return args }
        guard let subcommand = rest.first, !subcommand.hasPrefix("-") else {
            throw ValidationError("'\(seen[0])' must be followed by a link subcommand, as in `tapbridge -n NS link show`")
        }
        rest.removeFirst()
        var moved: [String] = []
        if let netns { moved += ["--netns", netns] }
        if json {
            guard jsonSubcommands.contains(subcommand) else {
                throw ValidationError("'-j' (JSON) applies to `link show` and `link monitor`, not `link \(subcommand)`")
            }
            moved.append("--json")
        }
        if stats > 0 {
            guard statsSubcommands.contains(subcommand) else {
                throw ValidationError("'-s' (statistics) applies to `link show`, not `link \(subcommand)`")
            }
            moved += Array(repeating: "-s", count: stats)
        }
        return ["link", subcommand] + moved + rest
    }
}
