// swift-tools-version:6.0
// A `tapbridge` of your own: the stock daemon and commands (the TapbridgeCLI product) plus a
// handler kind registered by name — here ../ethertype-counter's EtherTypeCounter as
// `ethertype-counter`, usable in `pipeline = [...]` with its own `[bridges.ethertype-counter]`
// keys. docs/handlers.md walks through it; tools/test-example builds it and the daemon tests run
// it with traffic between namespaces.
import PackageDescription

let package = Package(
    name: "custom-daemon",
    products: [.executable(name: "tapbridge-custom", targets: ["CustomTapbridge"])],
    dependencies: [
        .package(name: "tapbridge", path: "../../.."),
        .package(name: "ethertype-counter", path: "../ethertype-counter"),
    ],
    targets: [
        .executableTarget(
            name: "CustomTapbridge",
            dependencies: [.product(name: "TapbridgeCLI", package: "tapbridge"),
                           .product(name: "EtherTypeCounter", package: "ethertype-counter")]),
    ],
    swiftLanguageModes: [.v5]
)
