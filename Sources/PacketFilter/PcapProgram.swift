// PcapProgram: a pcap-filter expression ("tcp dst port 22") compiled once by libpcap into a
// classic BPF program, and run per frame by libpcap's bounds-checked BPF interpreter. A load
// past the end of the frame makes the program return 0: a truncated frame never matches an
// L3/L4 condition by accident. No text is looked at per frame.
//
// Its own module (over CLibpcap only) because three others run these programs: the filter
// handler (Handlers), the capture tap (Capture) and the engine's capture sessions (Datapath).
// The engine must not depend on the bundled handlers for it.
import CLibpcap
import Synchronization

/// An expression libpcap refused; `message` is libpcap's own.
public struct PcapCompileError: Error, Equatable, CustomStringConvertible {
    public let expression: String
    public let message: String
    public init(expression: String, message: String) { self.expression = expression; self.message = message }
    public var description: String { "(\"\(expression)\"): \(message)" }
}

public final class PcapProgram: @unchecked Sendable {
    public let expression: String
    private var program = bpf_program()

    /// Compiles `expression` for Ethernet frames; throws libpcap's own message.
    public init(_ expression: String) throws(PcapCompileError) {
        self.expression = expression
        guard let pcap = pcap_open_dead(DLT_EN10MB, 65535) else {
            throw PcapCompileError(expression: expression, message: "pcap_open_dead failed")
        }
        defer { pcap_close(pcap) }
        // libpcap's compiler is not re-entrant in every version; compile under one lock.
        let status = PcapProgram.compileLock.withLock { _ in
            pcap_compile(pcap, &program, expression, 1, PCAP_NETMASK_UNKNOWN)
        }
        guard status == 0 else {
            throw PcapCompileError(expression: expression, message: String(cString: pcap_geterr(pcap)))
        }
    }

    deinit { pcap_freecode(&program) }

    /// The compiled instructions, valid while this object lives: the hot path holds them as a
    /// plain value (no reference counting per frame) while something else keeps the program.
    public var instructions: PcapInstructions { PcapInstructions(UnsafePointer(program.bf_insns)) }

    static let compileLock = Mutex(())
}

/// A compiled program's raw classic-BPF instructions (see `PcapProgram.instructions`):
/// trivially copyable, so a worker can keep it in its per-frame tables.
public struct PcapInstructions: @unchecked Sendable {
    @usableFromInline let base: UnsafePointer<bpf_insn>
    @usableFromInline init(_ base: UnsafePointer<bpf_insn>) { self.base = base }

    /// Whether the frame matches (the program returns a nonzero snapshot length). `bytes` must
    /// not be empty.
    @inlinable @inline(__always)
    public func matches(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let p = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        return bpf_filter(base, p, UInt32(bytes.count), UInt32(bytes.count)) != 0
    }
}
