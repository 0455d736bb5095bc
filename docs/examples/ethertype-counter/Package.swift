// swift-tools-version:6.0
// A handler written outside tapbridge, against its handler-author products only: the worked
// example of docs/handlers.md. `TapbridgeHandlers` is the handler API and nothing that needs a C
// library (no liburing, libmnl or libpcap headers); `TapbridgeTesting` builds frames and fakes
// the clock for the tests. tools/test-example builds and tests it on every CI run, and builds
// ../custom-daemon, which puts this handler into a `tapbridge` of its own.
import PackageDescription

let package = Package(
    name: "ethertype-counter",
    products: [.library(name: "EtherTypeCounter", targets: ["EtherTypeCounter"])],
    dependencies: [.package(name: "tapbridge", path: "../../..")],
    targets: [
        .target(name: "EtherTypeCounter", dependencies: [.product(name: "TapbridgeHandlers", package: "tapbridge")]),
        .testTarget(name: "EtherTypeCounterTests",
                    dependencies: ["EtherTypeCounter", .product(name: "TapbridgeTesting", package: "tapbridge")]),
    ],
    swiftLanguageModes: [.v5]
)
