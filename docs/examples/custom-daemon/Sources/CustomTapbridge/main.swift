// The whole custom daemon: register the handler kinds, then run the stock `tapbridge` commands
// (`run`, `config check`, `stats`, ...). Everything the stock binary does, this one does too.
import Foundation
import TapbridgeCLI

do {
    try HandlerRegistry.register(EtherTypeCounterKind.kind)
} catch {
    FileHandle.standardError.write(Data("tapbridge-custom: \(error)\n".utf8))
    exit(1)
}
TapbridgeCommand.main()
