// WorkerReceive: keeping a read in flight on every port this worker reads. `armRead` asks the
// port's transport how (a provided-buffer read for a datagram device, a plain read into the
// port's reassembly buffer for a byte stream); a read that found no buffer (ENOBUFS) or was
// interrupted marks its port starved, and the loop re-arms starved ports once buffers are back.
// What happens to the bytes a read returns is the transport's (DatagramTransport.swift,
// StreamTransport.swift); what happens to a whole frame is WorkerForward.swift's.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import Ring

extension Worker {
    // MARK: reading

    func armControlRead() {
        guard let sqe = ring.sqe() else { return }
        sqe.prepareRead(fd: eventFD, into: UnsafeMutableRawPointer(eventValue), length: 8)
        sqe.setUserData(UserData(kind: OpKind.control))
    }

    func armRead(_ lp: Int) {
        let p = ports + lp
        guard p.pointee.state == LocalPortState.active, p.pointee.reads, !p.pointee.readArmed,
              let sqe = ring.sqe() else { return }
        let kind: UInt8
        switch p.pointee.transport {
        case .datagram: kind = prepareDatagramRead(sqe, lp)
        case .lengthPrefixedStream: kind = prepareStreamRead(sqe, lp)
        case .virtqueue: kind = prepareVirtqueueKick(sqe, lp)
        }
        sqe.useFixedFile()
        sqe.setUserData(UserData(kind: kind, port: UInt16(lp), generation: p.pointee.generation))
        p.pointee.readArmed = true
    }

    func markStarved(_ lp: Int) {
        if !ports[lp].starved { ports[lp].starved = true; starvedCount += 1 }
    }

    func rearmStarved() {
        var left = starvedCount
        starvedCount = 0
        var lp = 0
        while left > 0 && lp < Worker.maxPorts {
            if ports[lp].starved {
                ports[lp].starved = false
                left -= 1
                armRead(lp)
                stats.add(WorkerCounter.readRearms, 1)
            }
            lp += 1
        }
    }
}
