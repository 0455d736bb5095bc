// StopSignal: SIGINT/SIGTERM (and programmatic stop requests) and SIGHUP (reload) turned into
// bytes on a pipe, so the daemon's control loop waits for them and its periodic work with one
// poll(). Signal handlers only write one byte: everything else happens on the control thread.
// Bytes: 0/1 stop, 2 reload (SIGHUP), 3 wake-up only (control commands queued).
import Glibc
import SystemCalls

/// The write end of the self-pipe, for the async-signal-safe handler.
nonisolated(unsafe) private var stopPipeWriteFD: Int32 = -1
/// The last signal received (0: none), for the log line.
nonisolated(unsafe) private var lastSignal: Int32 = 0

private func onStopSignal(_ sig: Int32) {
    var b: UInt8 = sig == SIGHUP ? 2 : 1
    if sig != SIGHUP { lastSignal = sig }
    _ = write(stopPipeWriteFD, &b, 1)
}

public final class StopSignal: @unchecked Sendable {
    // The self-pipe, nonblocking, closed when this goes (after deinit has reset the handlers).
    private let readEnd: OwnedDescriptor
    private let writeEnd: OwnedDescriptor
    var readFD: Int32 { readEnd.rawValue }
    var writeFD: Int32 { writeEnd.rawValue }

    /// Creates the pipe and installs the SIGINT/SIGTERM handlers (one instance per process).
    public init() throws {
        let ends: PipeEnds
        do { ends = try Syscall.pipe(nonblocking: true) } catch {
            throw DaemonError("cannot create the stop pipe: \(error.reason)")
        }
        readEnd = ends.readEnd; writeEnd = ends.writeEnd
        stopPipeWriteFD = writeFD
        lastSignal = 0
        var sa = sigaction()
        sa.__sigaction_handler.sa_handler = onStopSignal
        sigemptyset(&sa.sa_mask)
        sa.sa_flags = SA_RESTART
        sigaction(SIGINT, &sa, nil)
        sigaction(SIGTERM, &sa, nil)
        sigaction(SIGHUP, &sa, nil)
        // A parent may have started us with these blocked (test runners do): unblock them here.
        var unblock = sigset_t()
        sigemptyset(&unblock)
        sigaddset(&unblock, SIGINT)
        sigaddset(&unblock, SIGTERM)
        sigaddset(&unblock, SIGHUP)
        pthread_sigmask(SIG_UNBLOCK, &unblock, nil)
        // A closed stdout (piped to `head`) must not kill the daemon before it cleans up.
        signal(SIGPIPE, SIG_IGN)
    }

    /// Asks the control loop to stop (from any thread).
    public func request() {
        var b: UInt8 = 0
        _ = try? Syscall.write(writeFD, &b, 1)
    }

    /// Wakes the control loop early without a stop or reload (work is queued for it: control
    /// commands). `wait` then returns `.timeout`.
    public func wake() {
        var b: UInt8 = 3
        _ = try? Syscall.write(writeFD, &b, 1)
    }

    public enum Wake { case timeout, stop, reload }

    /// Waits up to `seconds` for a stop or reload request. A stop wins over a pending reload.
    public func wait(seconds: Double) -> Wake {
        if stopped { return .stop }
        let ms = Int32(max(0, min(seconds, 3600)) * 1000)
        guard let revents = try? Syscall.poll(readFD, events: Int16(POLLIN), timeout: ms), revents & Int16(POLLIN) != 0 else { return .timeout }
        var buf = [UInt8](repeating: 0, count: 64)
        guard case .processed(let n)? = try? Syscall.read(readFD, &buf, buf.count), n > 0 else { return .timeout }
        if buf[0..<n].contains(where: { $0 != 2 && $0 != 3 }) { stopped = true; return .stop }
        return buf[0..<n].contains(2) ? .reload : .timeout
    }

    /// Once a stop arrived, every later wait reports it too.
    private var stopped = false

    /// Waits like `wait` but only reports stops (a reload request is dropped).
    public func waitForStop(seconds: Double) -> Bool {
        if stopped { return true }
        return wait(seconds: seconds) == .stop
    }

    /// "SIGTERM", "SIGINT" or "stop request".
    public var reason: String {
        switch lastSignal {
        case SIGINT: return "SIGINT"
        case SIGTERM: return "SIGTERM"
        default: return "stop request"
        }
    }

    deinit {
        signal(SIGINT, SIG_DFL)
        signal(SIGTERM, SIG_DFL)
        signal(SIGHUP, SIG_DFL)
        stopPipeWriteFD = -1   // (then the pipe's ends close with their owners)
    }
}

/// A start-up or run-time failure with a message meant for the user.
public struct DaemonError: Error, CustomStringConvertible {
    public var description: String
    public init(_ description: String) { self.description = description }
}
