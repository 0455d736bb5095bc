// `tapbridge demo`: a self-contained topology in network namespaces.
import ArgumentParser

struct DemoCommand: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "demo", abstract: "Build a demo topology in network namespaces and bridge it.")
}
