// swift-tools-version:6.1
// Micro-benchmarks of the frame pipeline (ordo-one/benchmark): ns/frame, mallocs and ARC
// traffic per frame. Run: bench/micro/run.
import PackageDescription

let package = Package(
    name: "tapbridge-micro",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(name: "tapbridge", path: "../.."),
    ],
    targets: [
        .executableTarget(
            name: "Pipeline",
            dependencies: [.product(name: "Benchmark", package: "benchmark"),
                           .product(name: "Tapbridge", package: "tapbridge")],
            path: "Benchmarks/Pipeline",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
    ],
    swiftLanguageModes: [.v5]
)
