// PcapProgram: a pcap-filter expression ("tcp dst port 22") compiled once by libpcap into a
// classic BPF program, and run per frame by libpcap's bounds-checked BPF interpreter. A load
// past the end of the frame makes the program return 0: a truncated frame never matches an
// L3/L4 condition by accident. No text is looked at per frame. Public: the capture tap
// (module Capture) filters with it too.
import CLibpcap
import Synchronization

public final class PcapProgram: @unchecked Sendable {
    public let expression: String
    private var program = bpf_program()

    /// Compiles `expression` for Ethernet frames; throws libpcap's own message.
    public init(_ expression: String) throws {
        self.expression = expression
        guard let pcap = pcap_open_dead(DLT_EN10MB, 65535) else {
            throw FilterError.compile(expression: expression, message: "pcap_open_dead failed", position: nil)
        }
        defer { pcap_close(pcap) }
        // libpcap's compiler is not re-entrant in every version; compile under one lock.
        let status = PcapProgram.compileLock.withLock { _ in
            pcap_compile(pcap, &program, expression, 1, PCAP_NETMASK_UNKNOWN)
        }
        guard status == 0 else {
            throw FilterError.compile(expression: expression, message: String(cString: pcap_geterr(pcap)), position: nil)
        }
    }

    deinit { pcap_freecode(&program) }

    /// Whether the frame matches (a nonzero snapshot length from the program).
    @inline(__always)
    public func matches(_ bytes: UnsafeRawBufferPointer) -> Bool {
        let p = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        return bpf_filter(program.bf_insns, p, UInt32(bytes.count), UInt32(bytes.count)) != 0
    }

    var instructionCount: Int { Int(program.bf_len) }

    /// The compiled instructions, valid while this object lives (the hot path holds them raw).
    public var instructions: UnsafePointer<bpf_insn> { UnsafePointer(program.bf_insns) }

    /// Runs raw instructions (see `instructions`) over a frame.
    @inline(__always)
    public static func run(_ insns: UnsafePointer<bpf_insn>, _ bytes: UnsafeRawBufferPointer) -> Bool {
        let p = bytes.baseAddress!.assumingMemoryBound(to: UInt8.self)
        return bpf_filter(insns, p, UInt32(bytes.count), UInt32(bytes.count)) != 0
    }

    static let compileLock = Mutex(())
}
