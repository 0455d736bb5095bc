// Segmentation: software TSO for a port that cannot take TCP super-frames (no vnet header, e.g.
// a VM stream socket) while the rest of the bridge keeps GSO. Each segment is one writev:
// rewritten headers (IP length/ID/checksum, TCP sequence/flags/checksum) from the transmit
// slot's scratch area, then its slice of the original payload, which is never copied.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import VirtioNet

extension Worker {
    /// Cuts the TCP/IPv4 or TCP/IPv6 super-frame into `gsoSize` segments for port `d`.
    /// False when the frame is not something we can segment (the caller counts `offload`).
    func segmentTCP(_ frame: Frame, to d: Int, buffer: Int32) -> Bool {
        let vnet = frame.vnet
        let kind = vnet.gsoType & 0x7F
        guard kind == VirtioNetHeader.gsoTCPv4 || kind == VirtioNetHeader.gsoTCPv6, vnet.needsChecksum,
              let base = frame.bytes.baseAddress else { return false }
        let len = frame.length
        let l4 = Int(vnet.checksumStart)
        let l3 = frame.etherType == EtherType.vlan ? 18 : 14
        guard l4 + 20 <= len, l3 < l4 else { return false }
        let tcpHeader = Int(base.load(fromByteOffset: l4 + 12, as: UInt8.self) >> 4) * 4
        let headers = l4 + tcpHeader
        let mss = Int(vnet.gsoSize)
        let ipv4 = kind == VirtioNetHeader.gsoTCPv4
        guard tcpHeader >= 20, headers < len, mss > 0,
              headers <= Worker.scratchPerSlot - Worker.segmentHeaderOffset else { return false }
        if ipv4 {
            guard Int(base.load(fromByteOffset: l3, as: UInt8.self) & 0x0F) * 4 == l4 - l3 else { return false }
        } else {
            guard l4 - l3 == 40 else { return false }   // extension headers: not handled
        }

        let dp = ports + d
        let payload = len - headers
        let count = (payload + mss - 1) / mss
        guard dp.pointee.txQueued + dp.pointee.txInflight + Int32(count) <= depth, count <= freeSlotCount() else {
            dp.pointee.counters?.countDrop(.queueFull)
            return true
        }

        // Pseudo-header part that does not change between segments: addresses and protocol.
        let addressSum = ipv4 ? onesComplementSum(base + l3 + 12, 8) : onesComplementSum(base + l3 + 8, 32)
        let seq0 = UInt32(bigEndian: base.loadUnaligned(fromByteOffset: l4 + 4, as: UInt32.self))
        let id0 = ipv4 ? UInt16(bigEndian: base.loadUnaligned(fromByteOffset: l3 + 4, as: UInt16.self)) : 0
        let flags0 = base.load(fromByteOffset: l4 + 13, as: UInt8.self)
        let hs = Int(dp.pointee.vnetHeaderSize)

        for i in 0..<count {
            let off = headers + i * mss
            let chunk = min(mss, len - off)
            let si = freeSlot
            let s = slots + Int(si)
            freeSlot = s.pointee.next
            let sc = scratch + Int(si) * Worker.scratchPerSlot
            let h = sc + Worker.segmentHeaderOffset
            h.copyMemory(from: UnsafeRawPointer(base), byteCount: headers)
            let tcpLength = tcpHeader + chunk
            if ipv4 {
                h.storeBytes(of: UInt16(l4 - l3 + tcpLength).bigEndian, toByteOffset: l3 + 2, as: UInt16.self)
                h.storeBytes(of: (id0 &+ UInt16(truncatingIfNeeded: i)).bigEndian, toByteOffset: l3 + 4, as: UInt16.self)
                h.storeBytes(of: UInt16(0), toByteOffset: l3 + 10, as: UInt16.self)
                let ipSum = foldedChecksum(onesComplementSum(h + l3, l4 - l3))
                h.storeBytes(of: ipSum.bigEndian, toByteOffset: l3 + 10, as: UInt16.self)
            } else {
                h.storeBytes(of: UInt16(tcpLength).bigEndian, toByteOffset: l3 + 4, as: UInt16.self)
            }
            h.storeBytes(of: (seq0 &+ UInt32(truncatingIfNeeded: i * mss)).bigEndian, toByteOffset: l4 + 4, as: UInt32.self)
            var flags = flags0
            if i < count - 1 { flags &= ~0x09 }   // FIN and PSH only on the last segment
            if i > 0 { flags &= ~0x80 }           // CWR only on the first
            h.storeBytes(of: flags, toByteOffset: l4 + 13, as: UInt8.self)
            h.storeBytes(of: UInt16(0), toByteOffset: l4 + 16, as: UInt16.self)
            let sum = addressSum &+ 6 &+ UInt64(tcpLength)
                &+ onesComplementSum(h + l4, tcpHeader) &+ onesComplementSum(base + off, chunk)
            h.storeBytes(of: foldedChecksum(sum).bigEndian, toByteOffset: l4 + 16, as: UInt16.self)

            let v = iov + Int(si) * Worker.iovecsPerSlot
            var n = 0
            let frameLen = headers + chunk
            let prefix = storeFramingPrefix(dp.pointee.transport, payload: frameLen + hs, scratch: sc, into: v)
            if prefix > 0 { n = 1 }
            if hs > 0 {
                var plain = VirtioNetHeader()
                plain.flags = VirtioNetHeader.flagDataValid
                plain.store(to: sc + 4, size: hs)
                v[n] = iovec(iov_base: sc + 4, iov_len: hs); n += 1
            }
            v[n] = iovec(iov_base: h, iov_len: headers); n += 1
            v[n] = iovec(iov_base: base + off, iov_len: chunk); n += 1
            refcount[Int(buffer)] += 1
            s.pointee = TxSlot(buffer: buffer, port: Int16(d), generation: dp.pointee.generation, iovFirst: 0,
                               iovCount: Int32(n), remaining: Int32(prefix + frameLen + hs),
                               frameBytes: Int32(frameLen), next: -1)
            dispatch(si, to: d)
        }
        stats.add(WorkerCounter.segmented, 1)
        return true
    }

    /// Free transmit slots (walks the free list only when a super-frame needs many).
    func freeSlotCount() -> Int {
        var n = 0
        var si = freeSlot
        while si >= 0 && n < 256 { n += 1; si = slots[Int(si)].next }
        return n
    }
}
