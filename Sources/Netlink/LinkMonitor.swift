// LinkMonitor: typed link events from the RTMGRP_LINK multicast group, so the daemon can follow
// links that appear, vanish, or go up and down under it.
#if canImport(Glibc)
import Glibc
import SystemCalls
#endif
import CLibmnl
import Foundation

public enum LinkEvent: Sendable, Equatable, CustomStringConvertible {
    case added(LinkInfo)
    case removed(LinkInfo)
    case up(LinkInfo)
    case down(LinkInfo)
    /// Anything else: MTU, address, carrier/operstate, master, name...
    case changed(LinkInfo)
    /// The kernel dropped notifications (socket buffer full): re-read the links.
    case overflow

    public var link: LinkInfo? {
        switch self {
        case .added(let l), .removed(let l), .up(let l), .down(let l), .changed(let l): return l
        case .overflow: return nil
        }
    }

    public var name: String {
        switch self {
        case .added: return "added"
        case .removed: return "removed"
        case .up: return "up"
        case .down: return "down"
        case .changed: return "changed"
        case .overflow: return "overflow"
        }
    }

    public var description: String { link.map { "\(name) \($0.name) (#\($0.index))" } ?? name }
}

public final class LinkMonitor {
    let socket: NetlinkSocket
    private var known: [Int32: UInt32] = [:]   // ifindex -> IFF_* flags
    private var pending: [LinkEvent] = []

    /// Subscribes before reading the current links, so nothing between the two is missed.
    public init(namespace: NetworkNamespace? = nil) throws {
        do {
            socket = try NetlinkSocket.open(in: namespace, groups: UInt32(RTMGRP_LINK))
        } catch let e as KernelError {
            throw NetlinkError(.monitor, interface: "", kind: "links", errno: e.errno, detail: e.message)
        }
        for l in try LinkManager(namespace: namespace).links() { known[l.index] = l.flags }
    }

    /// The next event; nil if `timeout` seconds pass without one (nil timeout: wait forever).
    public func next(timeout: Double? = nil) throws -> LinkEvent? {
        while pending.isEmpty {
            let ms = timeout.map { Int32(max(0, $0 * 1000)) } ?? -1
            let ready: Int16
            do { ready = try Syscall.poll(socket.fd, events: Int16(POLLIN), timeout: ms) } catch {
                throw NetlinkError(.monitor, interface: "", kind: "links", errno: error.errno)
            }
            if ready == 0 { return nil }
            let n = Syscall.uninterrupted { mnl_socket_recvfrom(socket.handle, socket.buffer, socket.bufferSize) }
            if n < 0 {
                if errno == EAGAIN { continue }
                if errno == ENOBUFS { pending.append(.overflow); break }
                throw NetlinkError(.monitor, interface: "", kind: "links", errno: errno)
            }
            decode(UnsafeRawBufferPointer(start: socket.buffer, count: n))
        }
        return pending.removeFirst()
    }

    private func decode(_ buf: UnsafeRawBufferPointer) {
        NetlinkMessages.forEach(in: buf) { msg in
            let type = msg.pointee.nlmsg_type
            guard type == nlType(RTM_NEWLINK) || type == nlType(RTM_DELLINK) else { return true }
            let link = LinkInfo(message: msg)
            if type == nlType(RTM_DELLINK) {
                known[link.index] = nil
                pending.append(.removed(link))
                return true
            }
            guard let before = known[link.index] else {
                known[link.index] = link.flags
                pending.append(.added(link))
                return true
            }
            known[link.index] = link.flags
            let up = UInt32(IFF_UP.rawValue)
            if before & up == 0 && link.flags & up != 0 { pending.append(.up(link)) }
            else if before & up != 0 && link.flags & up == 0 { pending.append(.down(link)) }
            else { pending.append(.changed(link)) }
            return true
        }
    }
}
