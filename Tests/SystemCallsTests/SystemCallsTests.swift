// SystemCallsTests: the semantics every caller relies on — EINTR never escapes a wrapper, EAGAIN
// is a value, errors carry the call and errno, an OwnedDescriptor closes its number exactly once
// (and not at all after release()).
import Foundation
import Glibc
import Testing
import SystemCalls

/// Whether `fd` is an open descriptor of this process.
private func isOpen(_ fd: Int32) -> Bool { fcntl(fd, F_GETFD) >= 0 }

private func isNone(_ owner: borrowing OwnedDescriptor?) -> Bool {
    switch owner {
    case .none: return true
    case .some: return false
    }
}

@Suite struct SystemCallsTests {
    @Test func readOfEmptyNonblockingPipeWouldBlock() throws {
        let p = try Syscall.pipe(nonblocking: true)
        var b: UInt8 = 0
        #expect(try Syscall.read(p.readEnd.rawValue, &b, 1) == .wouldBlock)
        var one: UInt8 = 7
        #expect(try Syscall.write(p.writeEnd.rawValue, &one, 1) == .processed(1))
        #expect(try Syscall.read(p.readEnd.rawValue, &b, 1) == .processed(1))
        #expect(b == 7)
    }

    @Test func endOfFileIsZero() throws {
        let p = try Syscall.pipe(nonblocking: true)
        let w = p.writeEnd.release()
        try Syscall.close(w)
        var b: UInt8 = 0
        #expect(try Syscall.read(p.readEnd.rawValue, &b, 1) == .processed(0))
    }

    @Test func errorsCarryCallAndErrno() throws {
        #expect(throws: SyscallError("open", errno: ENOENT)) {
            _ = try Syscall.open("/nonexistent/tapbridge-test", O_RDONLY | O_CLOEXEC)
        }
        var b: UInt8 = 0
        let e = #expect(throws: SyscallError.self) { _ = try Syscall.read(-1, &b, 1) }
        #expect(e?.errno == EBADF)
        #expect(e?.description == "read: \(String(cString: strerror(EBADF)))")
    }

    /// A signal that interrupts a blocking read (handler installed without SA_RESTART) is
    /// retried inside the wrapper: the caller sees only the byte that arrives afterwards.
    @Test func interruptedReadIsRetried() throws {
        var action = sigaction()
        action.__sigaction_handler.sa_handler = { _ in }
        action.sa_flags = 0   // no SA_RESTART: read(2) returns EINTR
        var old = sigaction()
        sigaction(SIGUSR2, &action, &old)
        defer { sigaction(SIGUSR2, &old, nil) }
        // The test runner's threads (libdispatch workers) block SIGUSR2: without this the
        // signal stays pending and the read is never interrupted.
        var only = sigset_t(), oldMask = sigset_t()
        sigemptyset(&only); sigaddset(&only, SIGUSR2)
        pthread_sigmask(SIG_UNBLOCK, &only, &oldMask)
        defer { pthread_sigmask(SIG_SETMASK, &oldMask, nil) }

        let p = try Syscall.pipe(nonblocking: false)
        let readFD = p.readEnd.rawValue, writeFD = p.writeEnd.rawValue
        let reader = pthread_self()
        let helper = Thread {
            usleep(50_000); pthread_kill(reader, SIGUSR2)   // interrupts the read below
            usleep(50_000); pthread_kill(reader, SIGUSR2)
            usleep(50_000)
            var b: UInt8 = 42
            _ = Glibc.write(writeFD, &b, 1)
        }
        helper.start()
        var b: UInt8 = 0
        #expect(try Syscall.read(readFD, &b, 1) == .processed(1))
        #expect(b == 42)
    }

    @Test func ownedDescriptorClosesOnceAtEndOfScope() throws {
        var raw: Int32 = -1
        do {
            let fd = try Syscall.open("/dev/null", O_RDONLY | O_CLOEXEC)
            raw = fd.rawValue
            #expect(isOpen(raw))
        }
        #expect(!isOpen(raw))
    }

    @Test func explicitCloseDoesNotCloseAgain() throws {
        let a = try Syscall.open("/dev/null", O_RDONLY | O_CLOEXEC)
        let number = a.rawValue
        try a.close()
        // The number is free: the next open may reuse it. That file must stay open after `a`
        // is gone (no second close of a reused number).
        let b = try Syscall.open("/dev/null", O_RDONLY | O_CLOEXEC)
        #expect(b.rawValue == number)
        #expect(isOpen(b.rawValue))
    }

    @Test func releaseHandsOverWithoutClosing() throws {
        let raw: Int32
        do {
            let fd = try Syscall.open("/dev/null", O_RDONLY | O_CLOEXEC)
            raw = fd.release()
        }
        #expect(isOpen(raw))
        try Syscall.close(raw)
        #expect(!isOpen(raw))
    }

    @Test func optionalOwnerTakenAndClosed() throws {
        var owner: OwnedDescriptor? = try Syscall.open("/dev/null", O_RDONLY | O_CLOEXEC)
        guard let taken = owner.take() else { Issue.record("nothing to take"); return }
        let raw = taken.rawValue
        let none = isNone(owner)
        #expect(none)
        _ = consume taken
        #expect(!isOpen(raw))
    }

    @Test func duplicateIsIndependent() throws {
        let a = try Syscall.open("/dev/null", O_RDONLY | O_CLOEXEC)
        let b = try a.duplicate()
        #expect(a.rawValue != b.rawValue)
        let raw = b.rawValue
        try a.close()
        #expect(isOpen(raw))
    }

    @Test func acceptWithNothingPendingIsNil() throws {
        let s = try Syscall.socket(AF_UNIX, Int32(SOCK_STREAM.rawValue) | Int32(SOCK_NONBLOCK.rawValue) | Int32(SOCK_CLOEXEC.rawValue))
        var sa = sockaddr_un()
        sa.sun_family = sa_family_t(AF_UNIX)   // autobind: an abstract address of the kernel's choosing
        try withUnsafePointer(to: &sa) { p throws(SyscallError) in
            try p.withMemoryRebound(to: sockaddr.self, capacity: 1) { q throws(SyscallError) in
                try Syscall.bind(s.rawValue, q, socklen_t(MemoryLayout<sa_family_t>.size))
            }
        }
        try Syscall.listen(s.rawValue, backlog: 1)
        let pending = try Syscall.accept(s.rawValue)
        let none = isNone(pending)
        #expect(none)
    }
}
