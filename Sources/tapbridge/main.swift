// The stock `tapbridge`: the commands live in the TapbridgeCLI library, so a program that
// registers its own handler kinds first (docs/handlers.md) gets the same tool.
import TapbridgeCLI

TapbridgeCommand.main()
