// EngineConfigurationTests: bounds the engine enforces on its configuration before any thread,
// ring or descriptor exists, and constants that must match the kernel's.
import CTapbridgeShim
import Testing
@testable import Datapath
import VirtioNet

@Suite struct EngineConfigurationTests {
    /// Workers kept one flag per worker in a fixed table of 256 (an out-of-bounds write on a
    /// host with more CPUs, or with `workers = 300`). The count is now bounded: more than
    /// `maxWorkers` is refused by name before anything starts.
    @Test func moreWorkersThanSupportedAreRefusedClearly() throws {
        var c = EngineConfiguration(workers: 300)
        c.buffersPerWorker = 8
        c.bufferSize = 2048
        c.streamBuffersPerWorker = 1
        c.transmitSlotsPerWorker = 64
        let engine = Engine(configuration: c)
        defer { engine.stop() }
        let error = #expect(throws: EngineError.self) { try engine.start() }
        #expect(error?.description.contains("300 worker threads") == true, "\(String(describing: error))")
        #expect(error?.description.contains("\(EngineConfiguration.maxWorkers)") == true)
        #expect(!engine.isRunning)
        let zero = Engine(configuration: EngineConfiguration(workers: 0))
        #expect(throws: EngineError.self) { try zero.start() }
    }

    @Test func defaultWorkerCountIsWithinTheBound() {
        let c = EngineConfiguration()
        #expect(c.workers >= 1 && c.workers <= EngineConfiguration.maxWorkers)
    }

    /// VirtioNetOffloads is pure Swift: its raw values are written out, and must stay the
    /// kernel's TUN_F_* bits that TUNSETOFFLOAD takes.
    @Test func virtioNetOffloadBitsAreTheKernelsTunFlags() {
        #expect(VirtioNetOffloads.checksum.rawValue == tb_TUN_F_CSUM())
        #expect(VirtioNetOffloads.tso4.rawValue == tb_TUN_F_TSO4())
        #expect(VirtioNetOffloads.tso6.rawValue == tb_TUN_F_TSO6())
        #expect(VirtioNetOffloads.tsoECN.rawValue == tb_TUN_F_TSO_ECN())
        #expect(VirtioNetOffloads.uso4.rawValue == tb_TUN_F_USO4())
        #expect(VirtioNetOffloads.uso6.rawValue == tb_TUN_F_USO6())
    }
}
