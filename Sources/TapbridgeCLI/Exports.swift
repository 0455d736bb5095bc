// What a custom daemon's main.swift needs besides `TapbridgeCommand`: the handler registry and
// its key reader (Config) and the handler API (Frames).
@_exported import Config
@_exported import Frames
