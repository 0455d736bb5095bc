// swift-tools-version:6.0
// A handler written outside tapbridge, against its library product only: the worked example
// of docs/handlers.md. tools/test-example builds and tests it on every CI run.
import PackageDescription

let package = Package(
    name: "ethertype-counter",
    products: [.library(name: "EtherTypeCounter", targets: ["EtherTypeCounter"])],
    dependencies: [.package(name: "tapbridge", path: "../../..")],
    targets: [
        .target(name: "EtherTypeCounter", dependencies: [.product(name: "Tapbridge", package: "tapbridge")]),
        .testTarget(name: "EtherTypeCounterTests", dependencies: ["EtherTypeCounter"]),
    ],
    swiftLanguageModes: [.v5]
)
