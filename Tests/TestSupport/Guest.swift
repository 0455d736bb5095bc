// Guest: a QEMU (TCG) guest built by tools/build-guest (a Debian kernel and a busybox initramfs
// whose /init runs the test named on the kernel command line and prints TAPBRIDGE-GUEST: PASS or
// FAIL). Shared by the VMBackend and daemon end-to-end tests.
import Foundation

public enum Guest {
    public static let repoRoot = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    public static let qemu = ["/usr/bin/qemu-system-x86_64", "/usr/local/bin/qemu-system-x86_64"].first { FileManager.default.isExecutableFile(atPath: $0) }
    /// Built once per test process (tools/build-guest caches across runs).
    public static let directory: String? = {
        guard qemu != nil else { return nil }
        guard let r = try? run([repoRoot + "/tools/build-guest"], check: false, timeout: 300), r.succeeded else { return nil }
        let dir = r.stdout.trimmingCharacters(in: .whitespacesAndNewlines)
        return FileManager.default.fileExists(atPath: dir + "/kernel") ? dir : nil
    }()
    public static var available: Bool { directory != nil }

    /// Runs a guest to completion; returns its console output. `no_timer_check`: on a loaded
    /// host a TCG guest's IO-APIC timer check can fail and panic the kernel ("IO-APIC + timer
    /// doesn't work"); the check is for broken hardware, which QEMU's is not.
    /// `wrapper` runs QEMU under another command (`setpriv --reuid=...`: an unprivileged VMM).
    /// `vhostUser`: the guest's RAM is a shared memfd (a vhost-user back-end maps it) and the
    /// NIC uses INTx (`vectors=0`: QEMU 7.2 under TCG crashes starting a vhost-user NIC with MSI-X).
    /// `deviceOptions`: appended to the `-device virtio-net-pci,...` options (",mq=on"; one with
    /// "vectors=" replaces the vhost-user default).
    public static func boot(netdev: String, mac: String, cmdline: String, timeout: Int = 90, wrapper: [String] = [],
                            vhostUser: Bool = false, deviceOptions: String = "", extraArgs: [String] = []) throws -> String {
        let dir = directory!
        let memory = (vhostUser ? ["-object", "memory-backend-memfd,id=mem,size=256M,share=on", "-numa", "node,memdev=mem"] : []) + extraArgs
        let r = try run(wrapper + ["timeout", "\(timeout)", qemu!, "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot"] + memory + [
                         "-kernel", dir + "/kernel", "-initrd", dir + "/initrd.gz",
                         "-append", "console=ttyS0 quiet panic=-1 no_timer_check " + cmdline,
                         "-netdev", netdev, "-device", "virtio-net-pci,netdev=n0,mac=\(mac),romfile=" + (vhostUser && !deviceOptions.contains("vectors=") ? ",vectors=0" : "") + deviceOptions],
                        check: false, timeout: Double(timeout + 10))
        return r.stdout + r.stderr
    }
}

