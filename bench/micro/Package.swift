// swift-tools-version:6.1
// Micro-benchmarks of the frame pipeline (ordo-one/benchmark): ns/frame, mallocs and ARC
// traffic per frame. Run: bench/micro/run. Also the Swift helpers bench/run uses:
// tbb-latency (UDP ping-pong percentiles with hdrhistogram-swift) and tbb-vmbridge (tapbridge
// with a VM-socket hop in the path).
import PackageDescription

let package = Package(
    name: "tapbridge-micro",
    platforms: [.macOS(.v13)],
    dependencies: [
        .package(url: "https://github.com/ordo-one/benchmark", from: "1.38.1", traits: ["MallocInterposer"]),
        .package(name: "tapbridge", path: "../.."),
        .package(url: "https://github.com/HdrHistogram/hdrhistogram-swift", from: "0.2.0"),
    ],
    targets: [
        .executableTarget(
            name: "Pipeline",
            dependencies: [.product(name: "Benchmark", package: "benchmark"),
                           .product(name: "Tapbridge", package: "tapbridge")],
            path: "Benchmarks/Pipeline",
            plugins: [.plugin(name: "BenchmarkPlugin", package: "benchmark")]),
        .executableTarget(
            name: "tbb-latency",
            dependencies: [.product(name: "Histogram", package: "hdrhistogram-swift")],
            path: "Tools/Latency"),
        .executableTarget(
            name: "tbb-vmbridge",
            dependencies: [.product(name: "Tapbridge", package: "tapbridge")],
            path: "Tools/VMBridge"),
    ],
    swiftLanguageModes: [.v5]
)
