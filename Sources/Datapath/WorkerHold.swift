// WorkerHold: frames held past the pipeline run (a handler set `Frame.hold`: an impairment's
// delay, jitter, rate or duplication). This file owns the worker's timed queue: a binary
// min-heap of held copies ordered by (release time, arrival), preallocated at worker start.
//
// A held copy stays in its buffer (one more reference on it, `refcount`); the heap keeps what
// `send` needs to build its writev later (frame address and length, virtio-net header, VLAN,
// destination and the port generation it was meant for). When its time comes it goes through
// `send` like any frame, so VLAN tagging, offloads, segmentation, capture and handoff to a
// stream port's owner all apply as usual.
//
// Bounds, so a delayed port can never starve the others: at most `FrameHold.limit` copies per
// egress port, and in all at most a quarter of the worker's ring buffers (plus a quarter of its
// stream buffers for frames copied out of streams or guest memory); a copy past either bound
// is dropped and counted against its egress port (`FrameHold.limitReason`). Ports that hold
// nothing keep the other three quarters, and with them the whole transmit fair share.
//
// Sleeping: the worker's wait (`Ring.submitAndWait(_:timeoutNanoseconds:)`) gets the time
// left until the earliest held copy, the kernel's own timer (IORING_ENTER_EXT_ARG), so an idle
// worker still sleeps, and no timeout SQE has to be cancelled or re-armed when an earlier
// frame turns up. With nothing held the wait has no timeout at all. Per frame: no allocation.
#if canImport(Glibc)
import Glibc
#endif
import Frames
import VirtioNet

/// One held copy of a frame (plain memory, in the worker's heap).
struct HeldFrame {
    var until: UInt64 = 0
    /// Arrival order: copies due at the same nanosecond leave in the order they came.
    var sequence: UInt64 = 0
    var base: UnsafeMutableRawPointer? = nil
    var length: Int32 = 0
    var buffer: Int32 = -1
    var port: Int16 = -1
    var generation: UInt8 = 0
    var vlan: UInt16 = 0
    var ingress: UInt16 = 0
    var vnet = VirtioNetHeader()

    @inline(__always)
    func precedes(_ other: HeldFrame) -> Bool {
        until < other.until || (until == other.until && sequence < other.sequence)
    }
}

/// The timed queue's storage and its two bounds (ring buffers and other buffers held).
struct HoldQueue {
    let heap: UnsafeMutablePointer<HeldFrame>
    let capacity: Int
    let ringShare: Int
    let otherShare: Int
    var count = 0
    var ringHeld = 0
    var otherHeld = 0
    var sequence: UInt64 = 0

    init(ringBuffers: Int, otherBuffers: Int) {
        ringShare = max(1, ringBuffers / 4)
        otherShare = max(1, otherBuffers / 4)
        capacity = ringShare + otherShare
        heap = .allocate(capacity: capacity)
        heap.initialize(repeating: HeldFrame(), count: capacity)
    }

    func deallocate() { heap.deallocate() }

    @inline(__always) var earliest: UInt64 { heap[0].until }

    mutating func push(_ f: HeldFrame) {
        var i = count
        count += 1
        heap[i] = f
        heap[i].sequence = sequence
        sequence &+= 1
        while i > 0 {
            let parent = (i - 1) >> 1
            if !heap[i].precedes(heap[parent]) { break }
            swapAt(i, parent)
            i = parent
        }
    }

    mutating func pop() -> HeldFrame {
        let top = heap[0]
        count -= 1
        if count > 0 {
            heap[0] = heap[count]
            var i = 0
            while true {
                let l = 2 * i + 1, r = l + 1
                var m = i
                if l < count && heap[l].precedes(heap[m]) { m = l }
                if r < count && heap[r].precedes(heap[m]) { m = r }
                if m == i { break }
                swapAt(i, m)
                i = m
            }
        }
        return top
    }

    @inline(__always)
    private func swapAt(_ a: Int, _ b: Int) {
        let t = heap[a]; heap[a] = heap[b]; heap[b] = t
    }
}

extension Worker {
    /// Sends `frame`'s copy for local port `d` now, or holds it as its `hold` asks (and its
    /// duplicates). Only called when `frame.hold` asks for something.
    @inline(never)
    func transmitHeld(_ frame: inout Frame, to d: Int, buffer: Int32) {
        let h = frame.hold
        var copies = 1 + Int(h.duplicates)
        if h.until <= context.now {
            while copies > 0 { send(&frame, to: d, buffer: buffer, asIs: false); copies -= 1 }
            return
        }
        let dp = ports + d
        guard let dc = dp.pointee.counters else { return }
        let perPort = h.limit == 0 ? Int32.max : Int32(clamping: h.limit)
        let ringBuffer = Int(buffer) < ringCount
        while copies > 0 {
            copies -= 1
            let full = ringBuffer ? hold.pointee.ringHeld >= hold.pointee.ringShare : hold.pointee.otherHeld >= hold.pointee.otherShare
            if dp.pointee.txHeld >= perPort || full || hold.pointee.count >= hold.pointee.capacity {
                dc.countDrop(h.limitReason)
                continue
            }
            hold.pointee.push(HeldFrame(until: h.until, base: frame.bytes.baseAddress, length: Int32(frame.bytes.count),
                                buffer: buffer, port: Int16(d), generation: dp.pointee.generation,
                                vlan: frame.vlan, ingress: frame.ingress.rawValue, vnet: frame.vnet))
            if ringBuffer { hold.pointee.ringHeld += 1 } else { hold.pointee.otherHeld += 1 }
            refcount[Int(buffer)] += 1
            dp.pointee.txHeld += 1
        }
    }

    /// Sends every held copy whose time has come (to a port that is still the one it was
    /// meant for; a copy for a port removed meanwhile just gives its buffer back).
    func releaseHeld() {
        let now = MonotonicClock.nanoseconds()
        context.now = now
        while hold.pointee.count > 0 && hold.pointee.earliest <= now {
            let f = hold.pointee.pop()
            let b = f.buffer
            if Int(b) < ringCount { hold.pointee.ringHeld -= 1 } else { hold.pointee.otherHeld -= 1 }
            let d = Int(f.port)
            let dp = ports + d
            if dp.pointee.state != LocalPortState.free && dp.pointee.generation == f.generation {
                dp.pointee.txHeld -= 1
                var frame = Frame(bytes: UnsafeMutableRawBufferPointer(start: f.base, count: Int(f.length)),
                                  ingress: PortID(f.ingress), vnet: f.vnet, vlan: f.vlan)
                send(&frame, to: d, buffer: b, asIs: false)
            }
            release(b)
        }
    }

    /// How long the worker may sleep before the earliest held copy is due (nil: nothing held).
    @inline(__always)
    func holdTimeout() -> UInt64? {
        guard hold.pointee.count > 0 else { return nil }
        let now = MonotonicClock.nanoseconds()
        let due = hold.pointee.earliest
        return due > now ? due - now : 0
    }
}
