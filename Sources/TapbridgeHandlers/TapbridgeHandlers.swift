// TapbridgeHandlers: the handler author's product. `import TapbridgeHandlers` gives the handler
// API (Frame, Verdict, FrameHandler, HandlerContext, HandlerCounter, DropReason, PortTable, ...)
// and nothing that needs a C system library: a handler package builds without liburing, libmnl
// or libpcap headers (the split swift-nio makes between NIOCore and NIOPosix). Embedders who
// want the engine, links and the bundled handlers use the `Tapbridge` product instead.
@_exported import Frames
