// The spanning-tree keys of a bridge: defaults, ranges, 802.1D's timer relation, and the
// learning switch it needs.
import Testing
@testable import Config

@Suite struct SpanningTreeConfig {
    let port = "[[bridges.ports]]\nname = \"m0\"\nparent = \"eth0\"\n"

    @Test func offByDefaultAndOnWithDefaults() throws {
        let off = try ConfigParser.parse("[[bridges]]\n" + port, file: "t.toml")
        #expect(off.bridges[0].spanningTree == nil)
        let on = try ConfigParser.parse("[[bridges]]\nstp = \"stp\"\n" + port, file: "t.toml")
        let s = try #require(on.bridges[0].spanningTree)
        #expect(s.priority == 32768 && s.helloTime == 2 && s.forwardDelay == 15 && s.maxAge == 20 && s.portCost == 100)
        let explicitOff = try ConfigParser.parse("[[bridges]]\nstp = \"off\"\n" + port, file: "t.toml")
        #expect(explicitOff.bridges[0].spanningTree == nil)
    }

    @Test func readsEveryKey() throws {
        let c = try ConfigParser.parse("""
            [[bridges]]
            stp = "stp"
            stp-priority = 4096
            stp-hello-time = 1
            stp-forward-delay = 4
            stp-max-age = 6
            stp-port-cost = 19
            """ + "\n" + port, file: "t.toml")
        let s = try #require(c.bridges[0].spanningTree)
        #expect(s.priority == 4096 && s.helloTime == 1 && s.forwardDelay == 4 && s.maxAge == 6 && s.portCost == 19)
    }

    @Test func portMayBeLeftOut() throws {
        let c = try ConfigParser.parse("[[bridges]]\nstp = \"stp\"\n" + port + "stp = false\n", file: "t.toml")
        #expect(c.bridges[0].ports[0].spanningTree == false)
        let d = try ConfigParser.parse("[[bridges]]\nstp = \"stp\"\n" + port, file: "t.toml")
        #expect(d.bridges[0].ports[0].spanningTree == true)
    }

    @Test func rapidWithItsKeys() throws {
        let keys = "[[bridges]]\nstp = \"rstp\"\nstp-tx-hold-count = 3\nstp-migrate-time = 2\n"
        let c = try ConfigParser.parse(keys + port + "stp-edge = true\nstp-auto-edge = false\nstp-point-to-point = false\n", file: "t.toml")
        let s = try #require(c.bridges[0].spanningTree)
        #expect(s.rapid && s.txHoldCount == 3 && s.migrateTime == 2)
        let o = c.bridges[0].ports[0].spanningTreeOptions
        #expect(o.adminEdge && !o.autoEdge && !o.pointToPoint)
        let d = try ConfigParser.parse("[[bridges]]\nstp = \"rstp\"\n" + port, file: "t.toml")
        let t = try #require(d.bridges[0].spanningTree)
        #expect(t.rapid && t.txHoldCount == 6 && t.migrateTime == 3 && t.forwardDelay == 15)
        let q = d.bridges[0].ports[0].spanningTreeOptions
        #expect(!q.adminEdge && q.autoEdge && q.pointToPoint)
        #expect(try ConfigParser.parse("[[bridges]]\nstp = \"stp\"\n" + port, file: "t.toml").bridges[0].spanningTree?.rapid == false)
    }

    @Test func refusesBadValues() {
        func refused(_ keys: String, _ fragment: String) {
            let found = issues("[[bridges]]\n" + keys + "\n" + port)
            #expect(found.contains { $0.contains(fragment) }, "\(keys): \(found)")
        }
        refused("stp = \"yes\"", "bridges[0].stp: must be 'rstp', 'stp' or 'off'")
        refused("stp = \"rstp\"\nstp-tx-hold-count = 0", "bridges[0].stp-tx-hold-count")
        refused("stp = \"rstp\"\nstp-migrate-time = 11", "bridges[0].stp-migrate-time")
        refused("stp = \"stp\"\nstp-priority = 1000", "bridges[0].stp-priority: 1000 is not a multiple of 4096")
        refused("stp = \"stp\"\nstp-priority = 65536", "bridges[0].stp-priority")
        refused("stp = \"stp\"\nstp-forward-delay = 2", "bridges[0].stp-forward-delay")
        refused("stp = \"stp\"\nstp-forward-delay = 4", "bridges[0].stp-max-age: 20.0 s is more than 2 x (stp-forward-delay - 1)")
        refused("stp = \"stp\"\nstp-hello-time = 10\nstp-max-age = 6", "is less than 2 x (stp-hello-time + 1)")
        refused("stp = \"stp\"\nstp-port-cost = 0", "bridges[0].stp-port-cost")
        refused("stp = \"stp\"\npipeline = []", "bridges[0].stp: the spanning tree gates the learning switch")
        refused("stp-prio = 4096", "stp-prio")
    }
}
