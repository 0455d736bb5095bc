// swift-tools-version:6.0
// tapbridge: macvtap interfaces + an io_uring frame-forwarding core with pluggable Swift handlers.
//
// Module map (one job each; see docs/architecture.md):
//   CLiburing, CLibmnl   system libraries (liburing-dev, libmnl-dev)
//   CTapbridgeShim       C macros and opcodes Swift cannot import (ioctl numbers, IOSQE_*, READ_MULTISHOT)
//   VirtioNet            the virtio-net header and offload set every port kind shares (pure Swift)
//   Frames               the handler seam: Frame, Verdict, FrameHandler, PortID/PortSet, MACAddress (pure Swift)
//   Netlink              rtnetlink over libmnl: create/read/delete macvtap+macvlan links, link events
//   Tap                  macvtap character devices: open by major:minor, TUN ioctls, vnet header, offloads
//   Ring                 io_uring wrapper: submission/completion, buffer rings, probe, user_data packing
//   Datapath             ports, workers, transmit queues, counters: the forwarding engine
//   CLibpcap             system library (libpcap-dev): pcap-filter compilation, classic BPF
//   Handlers             bundled handlers: LearningSwitch, FrameFilter
//   Capture              pcapng/pcap writers (rotation), capture rings and taps the workers fill
//   VMBackend            QEMU stream/dgram socket ports
//   CVhostUserShim       eventfd/memfd, SCM_RIGHTS walking, guest-memory barriers for VhostUser
//   VhostUser            vhost-user back-end: messages, connection, guest memory, split rings,
//                        the protocol state machine, virtio-net receive/transmit
//   Tapbridge            the library product: re-exports everything a handler author needs
//   Control              control socket: JSON-lines protocol v1, server (SO_PEERCRED), client
//   Daemon               config, link lifecycle, `run`/`demo` orchestration, metrics endpoint,
//                        sd_notify, crash-recovery ledger
//   tapbridge            the command-line tool
import PackageDescription

let package = Package(
    name: "tapbridge",
    products: [
        .library(name: "Tapbridge", targets: ["Tapbridge"]),
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

        .target(name: "VirtioNet"),
        .target(name: "Frames", dependencies: ["VirtioNet", .product(name: "Atomics", package: "swift-atomics")]),
        .target(
            name: "Netlink",
            dependencies: ["CLibmnl", "CTapbridgeShim", "Frames",
                           .product(name: "SystemPackage", package: "swift-system")]),
        .target(
            name: "Tap",
            dependencies: ["CTapbridgeShim", "VirtioNet", .product(name: "SystemPackage", package: "swift-system")]),
        .target(
            name: "Ring",
            dependencies: ["CLiburing", "CTapbridgeShim",
                           .product(name: "SystemPackage", package: "swift-system")]),
        .target(
            name: "Datapath",
            dependencies: ["Frames", "VirtioNet", "VhostUser", "Ring", "Tap", "Capture", "Handlers",
                           .product(name: "Atomics", package: "swift-atomics"),
                           .product(name: "SystemPackage", package: "swift-system")]),
        .target(
            name: "Handlers",
            dependencies: ["Frames", "CLibpcap", .product(name: "Atomics", package: "swift-atomics")]),
        .target(
            name: "Capture",
            dependencies: ["Handlers", "CLibpcap"]),
        .target(
            name: "VMBackend",
            dependencies: ["Frames", "VirtioNet", "Datapath", "VhostUser", .product(name: "SystemPackage", package: "swift-system")]),
        .target(name: "CVhostUserShim"),
        .target(name: "VhostUser", dependencies: ["VirtioNet", "CVhostUserShim"]),
        .target(
            name: "Tapbridge",
            dependencies: ["Frames", "VirtioNet", "Netlink", "Tap", "Ring", "Datapath", "Handlers", "Capture", "VMBackend", "VhostUser"]),
        .target(
            name: "Control",
            dependencies: ["VMBackend", .product(name: "SystemPackage", package: "swift-system")]),
        .target(
            name: "Daemon",
            dependencies: ["Tapbridge", "Control",
                           .product(name: "Logging", package: "swift-log"),
                           .product(name: "Metrics", package: "swift-metrics"),
                           .product(name: "Prometheus", package: "swift-prometheus"),
                           .product(name: "TOMLKit", package: "TOMLKit")]),
        .executableTarget(
            name: "tapbridge",
            dependencies: ["Daemon", "Control", "Capture", "Netlink", .product(name: "ArgumentParser", package: "swift-argument-parser")]),

        // Test helpers: namespaces, veth pairs and commands with guaranteed clean-up.
        .target(name: "TestSupport", path: "Tests/TestSupport"),
        .testTarget(name: "FramesTests", dependencies: ["Frames"]),
        .testTarget(name: "NetlinkTests", dependencies: ["Netlink", "TestSupport"]),
        .testTarget(name: "DatapathTests", dependencies: ["Datapath", "VirtioNet", "Tap", "Handlers", "Netlink", "Ring", "TestSupport"]),
        .testTarget(name: "HandlersTests", dependencies: ["Handlers"]),
        .testTarget(name: "CaptureTests", dependencies: ["Capture", "Datapath", "Handlers", "TestSupport"]),
        .testTarget(name: "VhostUserTests", dependencies: ["VhostUser", "CVhostUserShim", "VirtioNet", "TestSupport"]),
        .testTarget(name: "VMBackendTests", dependencies: ["VMBackend", "Handlers", "TestSupport"]),
        .testTarget(name: "DaemonTests", dependencies: ["Daemon", "Control", "TestSupport"]),
        .testTarget(name: "ControlTests", dependencies: ["Control", "TestSupport"]),
    ],
    swiftLanguageModes: [.v5]
)
