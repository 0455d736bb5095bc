// LinkLedger: the crash-recovery record of the links a daemon created, as one JSON file in
// the state directory (default /run/tapbridge/links.json). It is rewritten whole after every
// change, atomically (temp file, fsync, rename, fsync of the directory), so a SIGKILL or a
// power loss leaves either the old or the new list, never half of one. Each entry carries
// what proves a link is still the one we made (name, namespace, ifindex, MAC, kind) and the
// ledger carries the boot it belongs to: ifindexes mean nothing after a reboot.
import Foundation
import Glibc
import SystemCalls

/// One link as the daemon created it.
public struct LedgerLink: Codable, Sendable, Equatable {
    public var name: String
    /// Namespace name under /run/netns; nil: the daemon's own.
    public var netns: String?
    /// Index in the link's namespace, read back after creation (a move may change it).
    public var ifindex: Int32
    public var mac: String?
    public var kind: String
    public var parent: String
    /// The parent's index in the daemon's namespace (the link's IFLA_LINK points there).
    public var parentIndex: Int32?
    public var mode: String
    /// Creation marker: which daemon run made it, and when.
    public var createdBy: String
    public var createdAt: String
}

public struct LedgerFile: Codable, Sendable, Equatable {
    public var version = 1
    public var pid: Int32
    /// /proc/sys/kernel/random/boot_id of the boot the links were made in.
    public var bootID: String
    /// A random id per daemon run (the creation marker's value).
    public var run: String
    public var links: [LedgerLink]
}

public final class LinkLedger {
    public let directory: String
    public var path: String { directory + "/links.json" }
    public let run: String
    public let bootID: String

    public init(directory: String) {
        self.directory = directory
        self.run = UUID().uuidString.lowercased()
        self.bootID = Self.currentBootID()
    }

    static func currentBootID() -> String {
        ((try? String(contentsOfFile: "/proc/sys/kernel/random/boot_id", encoding: .utf8)) ?? "")
            .trimmingCharacters(in: .whitespacesAndNewlines)
    }

    /// Creates the state directory (mode 0755) if missing.
    public func prepare() throws {
        var isDir: ObjCBool = false
        if FileManager.default.fileExists(atPath: directory, isDirectory: &isDir) {
            guard isDir.boolValue else { throw DaemonError("state directory '\(directory)' is not a directory") }
            return
        }
        do {
            try FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true,
                                                    attributes: [.posixPermissions: 0o755])
        } catch {
            throw DaemonError("cannot create state directory '\(directory)': \(error.localizedDescription)")
        }
    }

    /// Largest ledger read: thousands of links fit in far less; anything bigger is not ours.
    static let maximumSize = 4 << 20

    /// The ledger left in the directory, if any. A file that does not decode, is not a regular
    /// file or is a symbolic link (never followed: O_NOFOLLOW) is reported naming the file, not
    /// guessed at: its links are left alone and the start is refused before anything is made.
    public func read() throws -> LedgerFile? {
        guard let data = try Self.readRegularFile(path) else { return nil }
        do {
            return try JSONDecoder().decode(LedgerFile.self, from: data)
        } catch {
            throw DaemonError("crash-recovery ledger '\(path)' is not a ledger tapbridge wrote (\(Self.decodingProblem(error))); "
                              + "move it away to start (links it may name are left alone)")
        }
    }

    /// Why the ledger in `directory` cannot be used, or nil (none there, or a good one). Read-only:
    /// `run --check` and the start call it before anything is created.
    public static func problem(directory: String) -> String? {
        do { _ = try LinkLedger(directory: directory).read(); return nil } catch { return "\(error)" }
    }

    /// The whole of `path` if it is a regular file; nil if there is none. A symbolic link, a
    /// non-regular file or one past `maximumSize` throws, naming the file.
    static func readRegularFile(_ path: String) throws -> Data? {
        let file: OwnedDescriptor   // closed when this returns
        do { file = try Syscall.open(path, O_RDONLY | O_NOFOLLOW | O_NONBLOCK | O_CLOEXEC) } catch {
            if error.errno == ENOENT { return nil }
            if error.errno == ELOOP {
                throw DaemonError("crash-recovery ledger '\(path)' is a symbolic link; tapbridge never follows one there: remove it to start")
            }
            throw DaemonError("cannot open crash-recovery ledger '\(path)': \(error.reason)")
        }
        let fd = file.rawValue
        var st = stat()
        guard fstat(fd, &st) == 0 else {
            throw DaemonError("cannot stat crash-recovery ledger '\(path)': \(String(cString: strerror(errno)))")
        }
        guard st.st_mode & S_IFMT == S_IFREG else {
            throw DaemonError("crash-recovery ledger '\(path)' is not a regular file: move it away to start")
        }
        guard st.st_size <= maximumSize else {
            throw DaemonError("crash-recovery ledger '\(path)' is \(st.st_size) bytes, more than a ledger can be (\(maximumSize)): move it away to start")
        }
        var data = Data(count: Int(st.st_size))
        var off = 0
        while off < data.count {
            let r = data.withUnsafeMutableBytes { p in Result { () throws(SyscallError) in try Syscall.read(fd, p.baseAddress! + off, p.count - off) } }
            let n: Int
            switch r {
            case .success(.processed(let count)): n = count
            case .success(.wouldBlock):
                throw DaemonError("cannot read crash-recovery ledger '\(path)': \(String(cString: strerror(EAGAIN)))")
            case .failure(let e):
                throw DaemonError("cannot read crash-recovery ledger '\(path)': \(e.reason)")
            }
            if n == 0 { break }
            off += n
        }
        return data.prefix(off)
    }

    /// A short reason from a JSONDecoder error (its full description runs to many lines).
    static func decodingProblem(_ error: Error) -> String {
        switch error {
        case DecodingError.dataCorrupted(let c): return "not JSON: \(c.debugDescription)"
        case DecodingError.keyNotFound(let k, _): return "key '\(k.stringValue)' missing"
        case DecodingError.typeMismatch(_, let c), DecodingError.valueNotFound(_, let c):
            return "\(c.codingPath.map(\.stringValue).joined(separator: ".")): \(c.debugDescription)"
        default: return "\(error)"
        }
    }

    /// Replaces the ledger with `links` (this run, this pid).
    public func write(_ links: [LedgerLink]) throws {
        let file = LedgerFile(pid: getpid(), bootID: bootID, run: run, links: links)
        let enc = JSONEncoder()
        enc.outputFormatting = [.prettyPrinted, .sortedKeys]
        try Self.writeAtomically(try enc.encode(file), to: path)
    }

    /// Removes the ledger (a clean stop: nothing of ours is left).
    public func remove() {
        unlink(path)
        Self.syncDirectory(directory)
    }

    /// temp file in the same directory + fsync + rename + fsync(directory): after a crash the
    /// path holds the old or the new content, whole.
    static func writeAtomically(_ data: Data, to path: String) throws {
        let tmp = path + ".tmp.\(getpid())"
        // Never through a link someone placed at the temp name: a fresh file or nothing.
        unlink(tmp)
        let file: OwnedDescriptor
        do { file = try Syscall.open(tmp, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, mode: 0o644) } catch {
            throw DaemonError("cannot write '\(tmp)': \(error.reason)")
        }
        let fd = file.rawValue
        var err: Int32 = 0
        var ok = data.withUnsafeBytes { raw -> Bool in
            var off = 0
            while off < raw.count {
                switch Result(catching: { () throws(SyscallError) in try Syscall.write(fd, raw.baseAddress! + off, raw.count - off) }) {
                case .success(.processed(let n)): off += n
                case .success(.wouldBlock): err = EAGAIN; return false
                case .failure(let e): err = e.errno; return false
                }
            }
            return true
        }
        if ok { ok = fsync(fd) == 0 }
        let syncErr = errno
        try? file.close()
        guard ok, rename(tmp, path) == 0 else {
            let e = ok ? errno : (err != 0 ? err : syncErr)
            unlink(tmp)
            throw DaemonError("cannot write '\(path)': \(String(cString: strerror(e)))")
        }
        syncDirectory((path as NSString).deletingLastPathComponent)
    }

    static func syncDirectory(_ dir: String) {
        guard let d = try? Syscall.open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC) else { return }
        fsync(d.rawValue)   // (closed as it goes)
    }

    /// Whether `pid` is a live process (the owner of a ledger still running).
    static func isAlive(_ pid: Int32) -> Bool {
        pid > 0 && (kill(pid, 0) == 0 || errno == EPERM)
    }
}
