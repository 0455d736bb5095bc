// Egress filters: judged per destination port through HandlerPipeline.runEgress, never at
// ingress; scoped to their ports; ingress-only filters are not egress judges.
import Testing
@testable import Frames
@testable import Handlers

@Suite struct EgressFilterTests {
    @Test func egressFilterJudgesOnlyItsDestinationPorts() throws {
        let f = try FrameFilter(rules: [.expression("udp dst port 53", .deny)], ports: ["lan"], direction: .egress)
        let p = HandlerPipeline([f])
        p.portsChanged(twoPorts)
        #expect(p.hasEgressStages)
        var bytes = Packet.ipv4(proto: 17, sport: 1000, dport: 53).bytes
        bytes.withUnsafeMutableBytes { buf in
            var fr = Frame(bytes: buf, ingress: PortID(0))
            let ctx = HandlerContext(now: 1)
            #expect(p.run(&fr, context: ctx) == .flood, "no judgement at ingress")
            #expect(p.runEgress(&fr, to: PortID(1), context: ctx) == .drop(.filtered), "lan's egress is judged")
            #expect(p.runEgress(&fr, to: PortID(2), context: ctx) == .continue, "tap0 is not in the filter's ports")
        }
        #expect(f.hits(rule: 0).packets == 1)
        var other = Packet.ipv4(proto: 17, sport: 1000, dport: 54).bytes
        other.withUnsafeMutableBytes { buf in
            var fr = Frame(bytes: buf, ingress: PortID(0))
            #expect(p.runEgress(&fr, to: PortID(1), context: HandlerContext(now: 1)) == .continue)
        }
    }

    @Test func bothDirectionsAndIngressOnly() throws {
        let both = try FrameFilter(rules: [.expression("tcp", .deny)], direction: .both)
        let ingress = try FrameFilter(rules: [.expression("tcp", .deny)])
        #expect(!HandlerPipeline([ingress]).hasEgressStages)
        let p = HandlerPipeline([both])
        #expect(p.hasEgressStages)
        var bytes = Packet.ipv4(proto: 6, sport: 1, dport: 2).bytes
        bytes.withUnsafeMutableBytes { buf in
            var fr = Frame(bytes: buf, ingress: PortID(0))
            #expect(p.run(&fr, context: HandlerContext(now: 1)) == .drop(.filtered))
            #expect(p.runEgress(&fr, to: PortID(1), context: HandlerContext(now: 1)) == .drop(.filtered))
        }
    }
}
