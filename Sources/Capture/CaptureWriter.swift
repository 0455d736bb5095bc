// CaptureWriter: encodes captured frames into one preallocated buffer and writes it to a
// descriptor the caller owns (pipe, socket, stdout) or to files it owns, rotated like tcpdump's
// -C/-W (size in units of 1,000,000 bytes; names FILE, FILE1, FILE2... or, with a file count,
// FILE0..FILE{W-1} zero-padded to W's digits, reused in turn). Runs on the capture thread only.
#if canImport(Glibc)
import Glibc
import SystemCalls
#endif

public struct CaptureError: Error, CustomStringConvertible {
    public var message: String
    public var errno: Int32
    public init(_ message: String, errno: Int32 = 0) { self.message = message; self.errno = errno }
    public var description: String {
        errno == 0 ? message : "\(message): \(String(cString: strerror(errno)))"
    }
}

/// Where the capture goes.
public enum CaptureDestination: Sendable {
    /// A descriptor the caller owns and closes (never closed here). Non-blocking ones are
    /// waited on with poll.
    case descriptor(Int32)
    /// A file created (truncated) here. `rotateBytes`: start a new file when the current one
    /// has grown past it (tcpdump -C, times 1,000,000); `maxFiles`: with rotation, keep at most
    /// this many files, overwriting the oldest (tcpdump -W).
    case file(path: String, rotateBytes: Int? = nil, maxFiles: Int? = nil)
}

public final class CaptureWriter {
    static let bufferSize = 1 << 20
    public static let maxSnaplen = 262_144

    let encoder: CaptureEncoder
    let destination: CaptureDestination
    private let buffer: UnsafeMutableRawPointer
    private var fill = 0
    /// Where bytes go: the caller's descriptor (borrowed, never closed here) or `ownedFile`'s.
    private var fd: Int32 = -1
    /// The capture file this writer opened, closed at rotation, finish or deinit.
    private var ownedFile: OwnedDescriptor?
    private var fileIndex = 0
    private var fileBytes = 0
    /// Files opened so far (for tests and the summary).
    public private(set) var filesOpened: [String] = []
    /// Asks a blocked write to give up (set from another thread by the session's stop).
    public var shouldGiveUp: () -> Bool = { false }

    public init(format: CaptureFormat, interfaces: [String], snaplen: Int, destination: CaptureDestination) throws {
        guard snaplen > 0 && snaplen <= CaptureWriter.maxSnaplen else {
            throw CaptureError("snapshot length \(snaplen) out of range 1...\(CaptureWriter.maxSnaplen)")
        }
        guard !interfaces.isEmpty, interfaces.count <= 65535 else { throw CaptureError("capture needs 1...65535 interfaces") }
        if case .file(let path, let rotate, let maxFiles) = destination {
            guard !path.isEmpty else { throw CaptureError("empty capture file name") }
            if let r = rotate, r <= 0 { throw CaptureError("rotation size must be positive") }
            if let w = maxFiles {
                guard w > 0 && w <= 100_000 else { throw CaptureError("file count must be 1...100000") }
                guard rotate != nil else { throw CaptureError("a file count (-W) needs a rotation size (-C)") }
            }
        }
        encoder = CaptureEncoder(format: format, interfaces: interfaces, snaplen: UInt32(snaplen))
        self.destination = destination
        buffer = .allocate(byteCount: CaptureWriter.bufferSize, alignment: 8)
        switch destination {
        case .descriptor(let d):
            fd = d
            fill = encoder.encodeHeader(into: buffer)
        case .file:
            try openFile()
        }
    }

    deinit {
        buffer.deallocate()   // (ownedFile closes itself)
    }

    /// tcpdump's MakeFilename: FILE for the first of unbounded rotation, else FILE + index,
    /// zero-padded to the digits of the file count.
    public static func fileName(_ base: String, index: Int, maxFiles: Int?) -> String {
        guard let w = maxFiles else { return index == 0 ? base : base + String(index) }
        let digits = String(w).count
        let s = String(index)
        return base + String(repeating: "0", count: max(0, digits - s.count)) + s
    }

    private func openFile() throws {
        guard case .file(let path, let rotate, let maxFiles) = destination else { return }
        let name = rotate == nil ? path : CaptureWriter.fileName(path, index: fileIndex, maxFiles: maxFiles)
        let file: OwnedDescriptor
        do { file = try Syscall.open(name, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, mode: 0o644) } catch {
            throw CaptureError("capture file \(name)", errno: error.errno)
        }
        fd = file.rawValue
        ownedFile = consume file
        filesOpened.append(name)
        fill = encoder.encodeHeader(into: buffer)
        fileBytes = fill
    }

    /// Appends one frame (already cut to the snapshot length).
    public func write(interface: UInt16, direction: CaptureDirection, timestamp: UInt64,
                      originalLength: Int, data: UnsafeRawBufferPointer) throws {
        if case .file(_, let rotate?, let maxFiles) = destination, fileBytes > rotate {
            try flush()
            ownedFile = nil; fd = -1
            fileIndex += 1
            if let w = maxFiles, fileIndex >= w { fileIndex = 0 }
            try openFile()
        }
        let need = CaptureEncoder.recordSize(data.count)
        if fill + need > CaptureWriter.bufferSize { try flush() }
        let n = encoder.encodeRecord(into: buffer + fill, interface: interface, direction: direction,
                                     timestamp: timestamp, originalLength: originalLength, data: data)
        fill += n
        fileBytes += n
    }

    /// pcapng only (nothing for pcap): an Interface Statistics Block carrying the session's
    /// counts, so a reader of the stream learns them (the CLI reads drops from it).
    public func writeStatistics(interface: UInt16, timestamp: UInt64, received: UInt64, dropped: UInt64,
                                comment: String? = nil) throws {
        guard encoder.format == .pcapng else { return }
        let need = encoder.statisticsSize(comment: comment)
        if fill + need > CaptureWriter.bufferSize { try flush() }
        let n = encoder.encodeStatistics(into: buffer + fill, interface: interface, timestamp: timestamp,
                                         received: received, dropped: dropped, comment: comment)
        fill += n
        fileBytes += n
    }

    /// Writes out what is buffered. EAGAIN waited for with poll (EINTR is retried by SystemCalls).
    public func flush() throws {
        var off = 0
        while off < fill {
            let written: IOResult<Int>
            do { written = try Syscall.write(fd, buffer + off, fill - off) } catch {
                fill = 0
                throw CaptureError(fileDescription, errno: error.errno)
            }
            switch written {
            case .processed(let n) where n > 0:
                off += n
            case .processed:
                fill = 0
                throw CaptureError(fileDescription, errno: EIO)
            case .wouldBlock:
                if shouldGiveUp() { fill = 0; throw CaptureError("capture output", errno: ETIMEDOUT) }
                _ = try? Syscall.poll(fd, events: Int16(POLLOUT), timeout: 100)
            }
        }
        fill = 0
    }

    /// Flushes and closes files this writer opened (a caller's descriptor stays open).
    public func finish() throws {
        defer {
            ownedFile = nil
            fd = -1
        }
        try flush()
    }

    private var fileDescription: String {
        switch destination {
        case .descriptor(let d): return "capture output (descriptor \(d))"
        case .file(let p, _, _): return "capture file \(filesOpened.last ?? p)"
        }
    }
}
