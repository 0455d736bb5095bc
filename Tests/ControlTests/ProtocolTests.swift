// ControlTests: protocol and server tests (filled below).
