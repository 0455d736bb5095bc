// TextSafety: the characters that never belong in a name, a path or a log line — C0 controls,
// DEL, C1 controls and the Unicode bidirectional controls — and how to show text that holds
// them. Names and paths come from configuration files and the control socket; a newline in one
// would split a log line into a forged one, a bidi override (U+202E) would make a table show
// something other than what it holds. Refused where they are read (config keys, control
// arguments), escaped wherever text is printed. In Frames, the module every other depends on,
// so the configuration, the control protocol and the logs share one definition.
public enum TextSafety {
    /// C0 (U+0000-U+001F), DEL, C1 (U+0080-U+009F), and the bidi controls U+061C, U+200E-U+200F,
    /// U+202A-U+202E, U+2066-U+2069.
    public static func isControl(_ u: Unicode.Scalar) -> Bool {
        switch u.value {
        case 0x00...0x1F, 0x7F...0x9F, 0x061C, 0x200E...0x200F, 0x202A...0x202E, 0x2066...0x2069: true
        default: false
        }
    }

    /// The first control character in `s` and its offset in Unicode scalars, or nil.
    public static func firstControl(in s: String) -> (scalar: Unicode.Scalar, offset: Int)? {
        for (i, u) in s.unicodeScalars.enumerated() where isControl(u) { return (u, i) }
        return nil
    }

    /// Why `s` (the value of `what`) is refused, or nil: e.g. "argument 'port' contains a
    /// control character (U+000A at offset 3); names and paths may not".
    public static func controlProblem(_ s: String, what: String) -> String? {
        guard let (u, i) = firstControl(in: s) else { return nil }
        return "\(what) contains a control character (\(codePoint(u)) at offset \(i)); names and paths may not"
    }

    /// "U+000A".
    public static func codePoint(_ u: Unicode.Scalar) -> String {
        let hex = String(u.value, radix: 16, uppercase: true)
        return "U+" + String(repeating: "0", count: max(0, 4 - hex.count)) + hex
    }

    /// `s` with every control character written as a visible escape (`\n`, `\r`, `\t`, `\x1b`,
    /// `\u{202E}`); with `escapingBackslash` a backslash is doubled too, so the result reads
    /// back unambiguously. Text without them is returned unchanged.
    public static func escaped(_ s: String, escapingBackslash: Bool = true) -> String {
        guard s.unicodeScalars.contains(where: { isControl($0) || (escapingBackslash && $0 == "\\") }) else { return s }
        var out = ""
        for u in s.unicodeScalars {
            switch u {
            case "\\" where escapingBackslash: out += "\\\\"
            case "\n": out += "\\n"
            case "\r": out += "\\r"
            case "\t": out += "\\t"
            case _ where u.value <= 0xFF && isControl(u):
                let hex = String(u.value, radix: 16)
                out += "\\x" + (hex.count < 2 ? "0" : "") + hex
            case _ where isControl(u): out += "\\u{" + String(u.value, radix: 16, uppercase: true) + "}"
            default: out.unicodeScalars.append(u)
            }
        }
        return out
    }
}
