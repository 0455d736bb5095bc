// swift-tools-version:6.0
// tapbridge: macvtap interfaces + an io_uring frame-forwarding core with pluggable Swift handlers.
//
// Module map (one job each; see docs/architecture.md):
//   CLiburing, CLibmnl   system libraries (liburing-dev, libmnl-dev)
//   CTapbridgeShim       C macros and opcodes Swift cannot import (ioctl numbers, IOSQE_*, READ_MULTISHOT)
//   SystemCalls          the one place for descriptor syscalls: EINTR retried, EAGAIN a value, typed
//                        errno (SyscallError), OwnedDescriptor (~Copyable, closed exactly once)
//   VirtioNet            the virtio-net header and offload set every port kind shares (pure Swift)
//   Frames               the handler seam: Frame, Verdict, FrameHandler, PortID/PortSet, MACAddress (pure Swift)
//   TapbridgeHandlers    the handler author's product: Frames alone, no C system library (docs/handlers.md)
//   TapbridgeTesting     test kit for handler authors: FrameBuilder, ManualClock (pure Swift)
//   Netlink              rtnetlink over libmnl: create/read/delete macvtap+macvlan links, link events
//   Tap                  macvtap character devices: open by major:minor, TUN ioctls, vnet header, offloads
//   Ring                 io_uring wrapper: submission/completion, buffer rings, probe, user_data packing
//   Datapath             ports, workers, transmit queues, counters: the forwarding engine
//   CLibpcap             system library (libpcap-dev): pcap-filter compilation, classic BPF
//   PacketFilter         PcapProgram: a pcap-filter expression compiled once, run per frame (filter, capture)
//   Handlers             bundled handlers: LearningSwitch, FrameFilter, SourceGuard
//   Capture              pcapng/pcap writers (rotation), capture rings and taps the workers fill
//   UnixSocketFiles      socket files made safely: mode 0660/0600, stale ones replaced, symlinks never followed
//   VMBackend            QEMU stream/dgram socket ports
//   CVhostUserShim       eventfd/memfd, SCM_RIGHTS walking, guest-memory barriers for VhostUser
//   VhostUser            vhost-user back-end: messages, connection, guest memory, split rings,
//                        the protocol state machine, virtio-net receive/transmit
//   Tapbridge            the embedder's library product: re-exports engine, links, handlers, capture, VMs
//   Control              control socket: JSON-lines protocol v1, server (SO_PEERCRED), client
//                        (needs UnixSocketFiles only: no datapath, no liburing)
//   MetricsEndpoint      Prometheus endpoint: bounded HTTP server (deadline per request, 16
//                        connections), exporter from engine snapshots and handler counters
//   Config               the configuration: model, TOML parser, port kinds, handler registry, every
//                        check that needs only the file (no OS calls: unit-tested and fuzzed alone)
//   Daemon               host checks, link lifecycle, `run`/`demo` orchestration, sd_notify,
//                        crash-recovery ledger: the life of one `tapbridge run`
//   TapbridgeCLI         the `tapbridge` commands as a library: `TapbridgeCommand.main()` after
//                        `HandlerRegistry.register(...)` builds a daemon with your own handlers
//   tapbridge            the command-line tool: main.swift calls TapbridgeCommand.main()
//
// Dependency graph (docs/architecture.md draws it): Datapath and Capture use PacketFilter, not
// Handlers; Control uses UnixSocketFiles, not VMBackend. Each target declares only the packages
// it imports (swift-system: Control; swift-atomics: Handlers).
import PackageDescription

let package = Package(
    name: "tapbridge",
    products: [
        .library(name: "Tapbridge", targets: ["Tapbridge"]),
        .library(name: "TapbridgeHandlers", targets: ["TapbridgeHandlers"]),
        .library(name: "TapbridgeTesting", targets: ["TapbridgeTesting"]),
        .library(name: "TapbridgeCLI", targets: ["TapbridgeCLI"]),
        .executable(name: "tapbridge", targets: ["tapbridge"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/apple/swift-log", from: "1.6.0"),
        .package(url: "https://github.com/apple/swift-system", from: "1.4.0"),
        .package(url: "https://github.com/apple/swift-atomics", from: "1.2.0"),
        .package(url: "https://github.com/LebJe/TOMLKit", from: "0.6.0"),
        .package(url: "https://github.com/apple/swift-metrics", from: "2.13.0"),
        .package(url: "https://github.com/swift-server/swift-prometheus", from: "2.4.1"),
    ],
    targets: [
        .systemLibrary(
            name: "CLiburing", pkgConfig: "liburing",
            providers: [.apt(["liburing-dev"])]),
        .systemLibrary(
            name: "CLibmnl", pkgConfig: "libmnl",
            providers: [.apt(["libmnl-dev"])]),
        .systemLibrary(
            name: "CLibpcap", pkgConfig: "libpcap",
            providers: [.apt(["libpcap-dev"])]),
        .target(name: "CTapbridgeShim", dependencies: ["CLiburing", "CLibmnl"]),

        .target(name: "SystemCalls"),
        .target(name: "VirtioNet"),
        .target(name: "Frames", dependencies: ["VirtioNet"]),
        .target(name: "TapbridgeHandlers", dependencies: ["Frames"]),
        .target(name: "TapbridgeTesting", dependencies: ["Frames"]),
        .target(
            name: "Netlink",
            dependencies: ["CLibmnl", "CTapbridgeShim", "Frames", "SystemCalls"]),
        .target(
            name: "Tap",
            dependencies: ["CTapbridgeShim", "VirtioNet", "SystemCalls"]),
        .target(
            name: "Ring",
            dependencies: ["CLiburing", "CTapbridgeShim"]),
        .target(
            name: "Datapath",
            dependencies: ["Frames", "VirtioNet", "VhostUser", "Ring", "Tap", "Capture", "PacketFilter", "SystemCalls"]),
        .target(name: "PacketFilter", dependencies: ["CLibpcap"]),
        .target(
            name: "Handlers",
            dependencies: ["Frames", "PacketFilter", .product(name: "Atomics", package: "swift-atomics")]),
        .target(
            name: "Capture",
            dependencies: ["PacketFilter", "SystemCalls"]),
        .target(name: "UnixSocketFiles", dependencies: ["SystemCalls"]),
        .target(
            name: "VMBackend",
            dependencies: ["Frames", "VirtioNet", "Datapath", "VhostUser", "UnixSocketFiles", "SystemCalls"]),
        .target(name: "CVhostUserShim"),
        .target(name: "VhostUser", dependencies: ["VirtioNet", "CVhostUserShim"]),
        .target(
            name: "Tapbridge",
            dependencies: ["Frames", "VirtioNet", "Netlink", "Tap", "Ring", "Datapath", "Handlers", "Capture", "VMBackend", "VhostUser"]),
        .target(
            name: "Control",
            dependencies: ["Frames", "UnixSocketFiles", "SystemCalls", .product(name: "SystemPackage", package: "swift-system")]),
        .target(
            name: "MetricsEndpoint",
            dependencies: ["Datapath", "Frames", "SystemCalls",
                           .product(name: "Metrics", package: "swift-metrics"),
                           .product(name: "Prometheus", package: "swift-prometheus")]),
        .target(
            name: "Config",
            dependencies: ["Frames", "Handlers",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "TOMLKit", package: "TOMLKit")]),
        .target(
            name: "Daemon",
            dependencies: ["Tapbridge", "Control", "Config", "MetricsEndpoint", "SystemCalls", "CTapbridgeShim",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "TOMLKit", package: "TOMLKit")]),
        .target(
            name: "TapbridgeCLI",
            dependencies: ["Config", "Daemon", "Control", "Capture", "Netlink", "SystemCalls", .product(name: "ArgumentParser", package: "swift-argument-parser")]),
        .executableTarget(name: "tapbridge", dependencies: ["TapbridgeCLI"]),

        // Test helpers: namespaces, veth pairs and commands with guaranteed clean-up.
        .target(name: "TestSupport", dependencies: ["SystemCalls", "VhostUser", "CVhostUserShim"], path: "Tests/TestSupport"),
        .testTarget(name: "FramesTests", dependencies: ["Frames"]),
        .testTarget(name: "SystemCallsTests", dependencies: ["SystemCalls"]),
        .testTarget(name: "NetlinkTests", dependencies: ["Netlink", "TestSupport"]),
        .testTarget(name: "DatapathTests", dependencies: ["Datapath", "VirtioNet", "Tap", "Handlers", "Netlink", "Ring", "TestSupport"]),
        .testTarget(name: "HandlersTests", dependencies: ["Handlers", "TapbridgeTesting"]),
        .testTarget(name: "CaptureTests", dependencies: ["Capture", "Datapath", "PacketFilter", "TestSupport"]),
        .testTarget(name: "VMBackendTests", dependencies: ["VMBackend", "Handlers", "UnixSocketFiles", "SystemCalls", "VhostUser", "TestSupport"]),
        .testTarget(name: "ConfigTests", dependencies: ["Config", "Frames"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "Config", "Control", "MetricsEndpoint", "TestSupport"]),
        .testTarget(name: "MetricsEndpointTests", dependencies: ["MetricsEndpoint"]),
        .testTarget(name: "ControlTests", dependencies: ["Control", "TestSupport", .product(name: "SystemPackage", package: "swift-system")]),
        .testTarget(name: "VhostUserTests", dependencies: ["VhostUser", "CVhostUserShim", "VirtioNet", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)

// Fuzz targets (Fuzz/Targets/<name>/<name>.swift, one libFuzzer entry point each) exist only
// when TAPBRIDGE_FUZZ is set, so ordinary builds never see them. tools/fuzz sets it and builds
// them with `--sanitize=fuzzer --sanitize=address` into .build-fuzz (docs/hardening.md).
if Context.environment["TAPBRIDGE_FUZZ"] != nil {
    let fuzzTargets: [(name: String, dependencies: [Target.Dependency])] = [
        ("FuzzStreamPrefix", ["Datapath"]),
        ("FuzzControlLine", ["Control"]),
        ("FuzzNetlinkReply", ["Netlink", "CLibmnl"]),
        ("FuzzPcapngReader", ["Capture"]),
        ("FuzzConfig", ["Daemon"]),
        ("FuzzHandlers", ["Frames", "Handlers"]),
        ("FuzzMulticastSnooping", ["Frames", "Handlers"]),
        ("FuzzFilterRule", ["Frames", "Handlers"]),
        ("FuzzSegmentation", ["Frames", "Datapath"]),
        ("FuzzVhostUserMessage", ["VhostUser"]),
        ("FuzzVhostUserSession", ["VhostUser"]),
        ("FuzzVhostUserMemoryTable", ["VhostUser"]),
        ("FuzzVirtqueueChains", ["VhostUser"]),
        ("FuzzSpanningTree", ["Frames", "Handlers"]),
    ]
    package.targets.append(.target(name: "FuzzSupport", path: "Fuzz/Support"))
    for t in fuzzTargets {
        package.targets.append(.executableTarget(name: t.name, dependencies: t.dependencies + ["FuzzSupport"],
                                                 path: "Fuzz/Targets/\(t.name)"))
    }
}
