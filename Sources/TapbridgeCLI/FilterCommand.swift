// `tapbridge filter list|replace`: a running daemon's filter rules with their hits, and live
// replacement (compiled off the datapath; a rejected set leaves the old one in force).
import ArgumentParser
import Control
import Foundation

struct FilterCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "filter", abstract: "List or replace a running daemon's filter rules.",
        discussion: """
            Rule syntax: docs/filter.md (ACTION [ARG] MATCH, e.g. "deny tcp dst port 22", "limit 100pps arp", "deny @ra-guard").

            Examples:
              tapbridge filter list
              tapbridge filter list lan --json
              tapbridge filter replace lan --rule "deny tcp dst port 22" --rule "allow ip"
              # rules.txt: one rule per line, # comments
              tapbridge filter replace lan --rules-file rules.txt --default drop
              echo "deny icmp" | tapbridge filter replace lan --rules-file -
            """,
        subcommands: [FilterList.self, FilterReplace.self])
}

struct FilterList: ParsableCommand {
    static let configuration = CommandConfiguration(commandName: "list", abstract: "Show each filter's rules, in order, with hits.", aliases: ["show"])
    @Argument(help: "Only this bridge.") var bridge: String?
    @Flag(help: "JSON: {\"filters\": [{bridge, default, generation, rules: [{index, rule, packets, bytes}]}]}.") var json = false
    @OptionGroup var control: ControlOptions

    func run() throws {
        let r = try control.call("filter.list", bridge.map { ["bridge": .string($0)] } ?? [:], as: FilterListResult.self)
        if json { printJSON(r); return }
        print(r.filters.isEmpty ? "no filter: no bridge has \"filter\" in its pipeline" : Self.render(r))
    }

    static func render(_ r: FilterListResult) -> String {
        r.filters.map { f in
            var t = TextTable(["#", "PACKETS", "BYTES", "RULE"], right: [0, 1, 2])
            for rule in f.rules { t.add(["\(rule.index)", "\(rule.packets)", "\(rule.bytes)", rule.rule]) }
            return "bridge \(f.bridge): default \(f.default), generation \(f.generation), \(f.rules.count) rule(s)\n" + t.render()
        }.joined(separator: "\n\n")
    }
}

struct FilterReplace: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "replace", abstract: "Replace a bridge's rules atomically (the old set stays if one rule is rejected).")
    @Argument(help: "The bridge (default: the only bridge with a filter).") var bridge: String?
    @Option(name: .customLong("rule"), help: "A rule; repeat for several, in order.") var rules: [String] = []
    @Option(help: ArgumentHelp("Rules, one per line (# starts a comment; - reads stdin).", valueName: "FILE")) var rulesFile: String?
    @Option(name: .customLong("default"), help: "accept or drop: what happens to frames no rule decided (default: unchanged).")
    var policy: String?
    @Flag(help: "JSON: the new rule set, as `filter list --json`.") var json = false
    @OptionGroup var control: ControlOptions

    func validate() throws {
        if rules.isEmpty && rulesFile == nil && policy == nil {
            throw ValidationError("give the new rules with --rule TEXT (repeatable) or --rules-file FILE, or only a new --default")
        }
        if !rules.isEmpty && rulesFile != nil { throw ValidationError("--rule and --rules-file: use one of them") }
        if let policy, policy != "accept" && policy != "drop" { throw ValidationError("--default must be accept or drop") }
    }

    func run() throws {
        var texts = rules
        if let rulesFile {
            let content: String
            if rulesFile == "-" {
                content = String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            } else {
                do { content = try String(contentsOfFile: rulesFile, encoding: .utf8) } catch {
                    printError("tapbridge: cannot read \(rulesFile): \(error.localizedDescription)")
                    throw ExitCode.failure
                }
            }
            texts = content.split(separator: "\n").map { line in
                String(line.split(separator: "#", maxSplits: 1, omittingEmptySubsequences: false).first ?? "")
                    .trimmingCharacters(in: .whitespaces)
            }.filter { !$0.isEmpty }
        }
        // --default alone changes only the policy: the rules are not sent, so they stay.
        var args: [String: JSONValue] = rules.isEmpty && rulesFile == nil ? [:] : ["rules": .array(texts.map { .string($0) })]
        if let bridge { args["bridge"] = .string(bridge) }
        if let policy { args["default"] = .string(policy) }
        let r = try control.call("filter.replace", args, as: FilterListResult.self)
        if json { printJSON(r) } else {
            print(FilterList.render(r))
            if let note = r.note { printError("note: \(note)") }
        }
    }
}
