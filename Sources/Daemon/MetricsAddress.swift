// MetricsAddress: the `metrics` key and `--metrics` option, a `HOST:PORT` (IPv4 or `[IPv6]`)
// checked for loopback: the endpoint has no authentication, so anything else needs
// `metrics-allow-remote`. A configuration value: parsed and checked here, served by
// MetricsEndpoint's MetricsServer.
import Glibc

/// A parsed `HOST:PORT` (IPv4 or `[IPv6]`), checked for loopback.
public struct MetricsAddress: Sendable, Equatable, CustomStringConvertible {
    public var host: String
    public var port: UInt16
    public var isIPv6: Bool

    public init(parsing text: String, allowRemote: Bool) throws {
        let hostPart: Substring, portPart: Substring
        if text.hasPrefix("[") {
            guard let close = text.firstIndex(of: "]"), text[text.index(after: close)...].hasPrefix(":") else {
                throw DaemonError("'\(text)': expected [IPv6]:PORT")
            }
            hostPart = text[text.index(after: text.startIndex)..<close]
            portPart = text[text.index(close, offsetBy: 2)...]
            isIPv6 = true
        } else {
            guard let colon = text.lastIndex(of: ":") else { throw DaemonError("'\(text)': expected HOST:PORT, e.g. 127.0.0.1:9417") }
            hostPart = text[..<colon]
            portPart = text[text.index(after: colon)...]
            isIPv6 = false
        }
        host = hostPart == "localhost" ? "127.0.0.1" : String(hostPart)
        guard let p = UInt16(portPart) else { throw DaemonError("'\(text)': port must be 0-65535") }
        port = p
        if isIPv6 {
            var a = in6_addr()
            guard inet_pton(AF_INET6, host, &a) == 1 else { throw DaemonError("'\(text)': '\(host)' is not an IPv6 address") }
        } else {
            var a = in_addr()
            guard inet_pton(AF_INET, host, &a) == 1 else { throw DaemonError("'\(text)': '\(host)' is not an IPv4 address") }
        }
        if !allowRemote && !isLoopback {
            throw DaemonError("'\(text)' is not a loopback address; the metrics endpoint has no authentication "
                              + "(set metrics-allow-remote = true or --metrics-allow-remote to expose it)")
        }
    }

    public var isLoopback: Bool { isIPv6 ? host == "::1" : host.hasPrefix("127.") }
    public var description: String { isIPv6 ? "[\(host)]:\(port)" : "\(host):\(port)" }
}
