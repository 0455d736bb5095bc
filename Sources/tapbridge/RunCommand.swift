// `tapbridge run`: the forwarding daemon.
import ArgumentParser

struct RunCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "run", abstract: "Run the forwarding daemon from a TOML configuration.")
}
