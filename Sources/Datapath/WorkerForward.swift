// WorkerForward: one received frame through its bridge's handler pipeline: receive counters,
// ingress capture, the verdict turned into a set of destination ports, egress stages, checksum
// completion for destinations that cannot carry a partial one, then one `send` per destination
// (WorkerTransmit.swift). The frame is never copied here.
#if canImport(Glibc)
import Glibc
#endif
import Capture
import Frames

extension Worker {
    // MARK: forwarding

    /// Runs the pipeline on the frame at `base` (vnet header first, if the port has one) and
    /// queues its transmissions. The caller holds one reference on `buffer`.
    @inline(__always)
    func deliver(_ lp: Int, _ base: UnsafeMutableRawPointer, _ len: Int, _ buffer: Int32) {
        let p = ports + lp
        let hs = Int(p.pointee.vnetHeaderSize)
        guard let counters = p.pointee.counters else { return }
        framesThisBatch &+= 1
        if len < hs + Frame.minimumLength + 4 {
            // Shorter than an Ethernet header, or an 802.1Q/802.1ad tag with no EtherType
            // behind it (16 or 17 bytes): untagged for an access port it would leave as a runt.
            if len < hs + Frame.minimumLength || isVLANTagged(base + hs) {
                counters.countDrop(.malformed)
                return
            }
        }
        if hasInvalidSource(base + hs) {
            counters.countDrop(.invalidSource)
            return
        }
        let vnet = hs > 0 ? VirtioNetHeader(loadingFrom: base, size: hs) : VirtioNetHeader()
        var frame = Frame(bytes: UnsafeMutableRawBufferPointer(start: base + hs, count: len - hs),
                          ingress: p.pointee.id, vnet: vnet)
        if p.pointee.captureFlags & CaptureDirection.ingress.rawValue != 0 {
            captureFrame(p, UnsafeRawBufferPointer(frame.bytes), .ingress, tagging: .asIs)
        }
        let flen = UInt64(len - hs)
        counters.add(PortCounter.rxFrames, 1)
        counters.add(PortCounter.rxBytes, flen)
        if flen > 1514 { counters.add(PortCounter.rxLarge, 1); counters.max(PortCounter.rxLargest, flen) }

        let lb = bridges + Int(p.pointee.bridge)
        guard let pipeline = lb.pointee.pipeline else { return }
        let verdict = pipeline._withUnsafeGuaranteedRef { $0.run(&frame, context: context) }

        var targets = PortSet()
        switch verdict {
        case .drop(let reason):
            counters.countDrop(reason)
        case .forward(let id):
            if lb.pointee.slotByID[Int(id.rawValue)] >= 0 { targets.insert(id) } else {
                counters.countDrop(.noDestination)
            }
        case .forwardSet(let set):
            targets = set.intersection(lb.pointee.members)
            if targets.isEmpty { counters.countDrop(.noDestination) }
        case .flood, .continue:
            targets = lb.pointee.members
            targets.remove(frame.ingress)
        }
        let mirror = frame.mirror
        if frame.vnet.needsChecksum && !frame.vnet.isGSO {
            // Complete the checksum once, before any copy leaves, if any destination cannot.
            for id in targets.union(mirror) {
                let d = Int(lb.pointee.slotByID[Int(id.rawValue)])
                if d >= 0 && !ports[d].transmitOffloads.contains(.checksum) { completeChecksum(&frame); break }
            }
        }
        if !mirror.isEmpty {
            for id in mirror {
                let d = Int(lb.pointee.slotByID[Int(id.rawValue)])
                if d >= 0 { send(&frame, to: d, buffer: buffer, asIs: true) }
            }
        }
        if pipeline._withUnsafeGuaranteedRef({ $0.hasEgressStages }) {
            if !targets.isEmpty { judgeAndSend(&frame, targets, lb, pipeline, buffer) }
            return
        }
        for id in targets {
            let d = Int(lb.pointee.slotByID[Int(id.rawValue)])
            guard d >= 0 else { continue }
            if frame.hold.until | UInt64(frame.hold.duplicates) != 0 {
                transmitHeld(&frame, to: d, buffer: buffer)
            } else {
                send(&frame, to: d, buffer: buffer, asIs: false)
            }
        }
    }

    /// Whether the EtherType of the frame at `f` (at least 14 bytes) is an 802.1Q/802.1ad TPID.
    @inline(__always)
    func isVLANTagged(_ f: UnsafeMutableRawPointer) -> Bool {
        let t = UInt16(bigEndian: f.loadUnaligned(fromByteOffset: 12, as: UInt16.self))
        return t == EtherType.vlan || t == EtherType.qinq
    }

    /// Whether the source MAC of the frame at `f` is multicast (broadcast included) or all zero:
    /// never a real sender, it cannot be learned, and the Linux bridge drops such frames too
    /// (`is_valid_ether_addr`). Dropped before any handler sees the frame.
    @inline(__always)
    func hasInvalidSource(_ f: UnsafeMutableRawPointer) -> Bool {
        let high = f.loadUnaligned(fromByteOffset: 6, as: UInt32.self)   // bytes 6..9
        let low = f.loadUnaligned(fromByteOffset: 10, as: UInt16.self)   // bytes 10..11
        return f.load(fromByteOffset: 6, as: UInt8.self) & 1 != 0 || (high | UInt32(low)) == 0
    }

    /// Egress judges (filters, impairments): each destination's copy is judged for that port
    /// just before it leaves; a drop is counted against that port, a hold an egress judge sets
    /// (`Frame.hold`) applies to that copy only (each copy starts from the ingress hold).
    @inline(never)
    func judgeAndSend(_ frame: inout Frame, _ targets: PortSet, _ lb: UnsafeMutablePointer<LocalBridge>,
                      _ pipeline: Unmanaged<HandlerPipeline>, _ buffer: Int32) {
        let ingressHold = frame.hold
        for id in targets {
            let d = Int(lb.pointee.slotByID[Int(id.rawValue)])
            guard d >= 0 else { continue }
            frame.hold = ingressHold
            let v = pipeline._withUnsafeGuaranteedRef { $0.runEgress(&frame, to: id, context: context) }
            if case .drop(let reason) = v {
                ports[d].counters?.countDrop(reason)
                continue
            }
            if frame.hold.until | UInt64(frame.hold.duplicates) != 0 {
                transmitHeld(&frame, to: d, buffer: buffer)
            } else {
                send(&frame, to: d, buffer: buffer, asIs: false)
            }
        }
    }

    /// Copies a frame into the port's capture tap (only called for captured ports). Egress
    /// frames get the VLAN rewrite the port applies, so the capture shows what leaves.
    @inline(never)
    func captureFrame(_ p: UnsafeMutablePointer<LocalPort>, _ bytes: UnsafeRawBufferPointer, _ direction: CaptureDirection,
                              tagging: EgressTagging) {
        guard let tap = p.pointee.captureTap else { return }
        var tag: UInt32 = 0
        var strip = false
        switch tagging {
        case .insertTag(let vid): tag = 0x8100_0000 | UInt32(vid & 0x0FFF)
        case .stripTag: strip = true
        default: break
        }
        tap._withUnsafeGuaranteedRef {
            $0.offer(bytes, interface: p.pointee.captureInterface, direction: direction, tag: tag, strip: strip)
        }
    }

    func completeChecksum(_ frame: inout Frame) {
        if completePartialChecksum(frame.bytes, start: Int(frame.vnet.checksumStart), offset: Int(frame.vnet.checksumOffset)) {
            frame.vnet.flags &= ~VirtioNetHeader.flagNeedsChecksum
            frame.vnet.flags |= VirtioNetHeader.flagDataValid
        }
    }
}
