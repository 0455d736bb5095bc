// `tapbridge impair PORT SETTINGS... | show [PORT] | clear PORT`: a running daemon's network
// impairments (delay, loss, rate, ...) changed live, in tc-netem's words (docs/impair.md).
import ArgumentParser
import Control
import Foundation

struct ImpairCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "impair", abstract: "Set, show or clear a port's impairment (delay, jitter, loss, rate, ...) live.",
        discussion: """
            Words as tc-netem(8) (docs/impair.md): direction ingress|egress|both (default egress: frames \
            leaving by the port), delay TIME [JITTER [CORR%]], jitter TIME, distribution uniform|normal|pareto, \
            correlation PCT, loss PCT [CORR%] | loss gemodel P [R [1-H [1-K]]], duplicate PCT [CORR%], \
            reorder PCT [CORR%], corrupt PCT [CORR%], rate RATE [OVERHEAD], overhead BYTES, limit FRAMES, seed N.
            The bridge's pipeline must hold "impair". Settings replace the port's previous ones as a whole.

            Examples:
              tapbridge impair vm1 delay 80ms jitter 10ms loss 1%
              tapbridge impair vm1 direction both rate 20mbit limit 100
              tapbridge impair vm1 loss gemodel 1% 30% seed 7
              tapbridge impair show
              tapbridge impair show vm1 --json
              tapbridge impair clear vm1
            """)

    @Argument(help: ArgumentHelp("A port name, or 'show' / 'clear'.", valueName: "PORT|show|clear")) var port: String
    @Argument(parsing: .allUnrecognized, help: ArgumentHelp("The settings (or, after show/clear, the port).", valueName: "WORDS"))
    var words: [String] = []
    @Flag(help: "JSON: {\"impairments\": [{bridge, port, settings, counters}]}.") var json = false
    @OptionGroup var control: ControlOptions

    func validate() throws {
        switch port {
        case "show": if words.count > 1 { throw ValidationError("impair show takes at most one port") }
        case "clear": if words.count != 1 { throw ValidationError("impair clear takes one port: tapbridge impair clear PORT") }
        default: if words.isEmpty { throw ValidationError("give the settings, e.g. tapbridge impair \(port) delay 80ms loss 1% (or: impair show, impair clear \(port))") }
        }
    }

    func run() throws {
        let r: ImpairResult
        switch port {
        case "show":
            r = try control.call("impair.show", words.first.map { ["port": .string($0)] } ?? [:], as: ImpairResult.self)
        case "clear":
            r = try control.call("impair.clear", ["port": .string(words[0])], as: ImpairResult.self)
        default:
            r = try control.call("impair.set", ["port": .string(port), "settings": .string(words.joined(separator: " "))],
                                 as: ImpairResult.self)
        }
        if json { printJSON(r); return }
        print(Self.render(r))
        if let note = r.note { printError("note: \(note)") }
    }

    static func render(_ r: ImpairResult) -> String {
        if r.impairments.isEmpty { return "no impairment set" }
        var t = TextTable(["BRIDGE", "PORT", "DELAYED", "LOST", "DUP", "REORD", "CORRUPT", "RATE-DROP", "SETTINGS"],
                          right: [2, 3, 4, 5, 6, 7])
        for i in r.impairments {
            let c = i.counters
            t.add([i.bridge, i.port, "\(c["delayed"] ?? 0)", "\(c["lost"] ?? 0)", "\(c["duplicated"] ?? 0)",
                   "\(c["reordered"] ?? 0)", "\(c["corrupted"] ?? 0)", "\(c["rate_dropped"] ?? 0)",
                   i.settings.isEmpty ? "(none)" : i.settings])
        }
        return t.render()
    }
}
