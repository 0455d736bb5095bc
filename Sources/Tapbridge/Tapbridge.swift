// Tapbridge: the library product. `import Tapbridge` gives a handler author (or an embedding
// program) the frame API, the bundled handlers, the engine, and link management.
@_exported import Frames
@_exported import VirtioNet
@_exported import Netlink
@_exported import Tap
@_exported import Ring
@_exported import Datapath
@_exported import Handlers
@_exported import Capture
@_exported import PacketFilter
@_exported import VMBackend
@_exported import VhostUser
