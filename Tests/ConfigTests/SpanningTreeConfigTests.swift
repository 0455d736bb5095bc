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

    @Test func refusesBadValues() {
        func refused(_ keys: String, _ fragment: String) {
            let found = issues("[[bridges]]\n" + keys + "\n" + port)
            #expect(found.contains { $0.contains(fragment) }, "\(keys): \(found)")
        }
        refused("stp = \"rstp\"", "bridges[0].stp: 'rstp' (802.1w) is not implemented yet")
        refused("stp = \"yes\"", "bridges[0].stp: must be 'stp' or 'off'")
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
