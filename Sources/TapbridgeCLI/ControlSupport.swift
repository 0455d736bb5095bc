// Shared pieces of the subcommands that talk to a running daemon over its control socket:
// the `--control PATH` / `--json` options, the connection (with the "no daemon" message), and
// aligned text tables.
import ArgumentParser
import Control
import Foundation

struct ControlOptions: ParsableArguments {
    @Option(name: .customLong("control"),
            help: ArgumentHelp("The daemon's control socket (default: $TAPBRIDGE_CONTROL, else /run/tapbridge/control.sock).", valueName: "PATH"))
    var path: String?

    var socketPath: String { ControlClient.socketPath(option: path) }

    /// A connected client; a failure is printed in words and exits 1.
    func connect() throws -> ControlClient {
        do { return try ControlClient(path: socketPath) } catch { fail(error) }
    }

    /// Sends `cmd` and decodes its result; any failure is printed and exits 1.
    func call<T: Decodable>(_ cmd: String, _ args: [String: JSONValue] = [:], as type: T.Type) throws -> T {
        let client = try connect()
        do { return try client.call(cmd, args, as: type) } catch { fail(error) }
    }

    /// Sends `cmd` and returns its raw result.
    func call(_ cmd: String, _ args: [String: JSONValue] = [:]) throws -> JSONValue {
        let client = try connect()
        do { return try client.call(cmd, args) } catch { fail(error) }
    }
}

/// Prints a control error as the daemon or client phrased it and exits 1.
func fail(_ error: Error) -> Never {
    if let e = error as? ControlClientError { printError(e.description) } else { printError("tapbridge: \(error)") }
    Foundation.exit(1)
}

/// Prints `value` as sorted-key JSON on one line.
func printJSON<T: Encodable>(_ value: T) {
    if let data = try? JSONCodec.encoder.encode(value) { print(String(decoding: data, as: UTF8.self)) }
}

/// Columns padded to their widest cell; numeric columns right-aligned.
struct TextTable {
    var headers: [String]
    var rows: [[String]] = []
    /// Column indexes aligned right (numbers).
    var rightAligned: Set<Int> = []

    init(_ headers: [String], right: Set<Int> = []) { self.headers = headers; rightAligned = right }

    mutating func add(_ row: [String]) { rows.append(row) }

    func render() -> String {
        let all = [headers] + rows
        let widths = headers.indices.map { i in all.map { i < $0.count ? $0[i].count : 0 }.max() ?? 0 }
        return all.map { row in
            row.indices.map { i -> String in
                let cell = row[i], pad = String(repeating: " ", count: max(0, widths[i] - cell.count))
                if i == row.count - 1 && !rightAligned.contains(i) { return cell }
                return rightAligned.contains(i) ? pad + cell : cell + pad
            }.joined(separator: "  ")
        }.joined(separator: "\n")
    }
}

/// 1234567 -> "1.23M" (SI, for rates in tables).
func humanCount(_ v: Double) -> String {
    let units = ["", "k", "M", "G", "T"]
    var x = v, i = 0
    while abs(x) >= 1000 && i < units.count - 1 { x /= 1000; i += 1 }
    let s = i == 0 ? String(format: x == x.rounded() ? "%.0f" : "%.1f", x) : String(format: x >= 100 ? "%.0f" : x >= 10 ? "%.1f" : "%.2f", x)
    return s + units[i]
}
