// TOMLPreflight: a pass over configuration text before it reaches TOMLKit, for inputs its
// parser (toml++ 3, compiled with assertions) aborts the whole process on instead of reporting
// them. Found by Fuzz/Targets/FuzzConfig; `config check`, `run` and a SIGHUP reload all died:
// - a table header whose name does not start with a key character or a quote, such as
//   `[[!bridges]]` or a `[` alone on its line (`parse_key: Assertion ... failed`);
// - a `}` where an array expects a value, such as `["filter",}]` (`parse_value: Assertion
//   '!is_value_terminator(*cp)' failed`);
// - a malformed date-time such as `1979-05-27T?` (`parse_time: Assertion
//   'is_decimal_digit(*cp)' failed`), and toml++'s value classifier asserts on other
//   malformed bare values.
// So every bare value (not a string, array or inline table) must be a boolean or a TOML number
// before toml++ sees it; the configuration uses no dates or times, which are refused here too.
//
// The text is read the way a TOML parser reads it: strings (basic, literal, multi-line) and
// comments skipped, arrays and inline tables tracked, a `[` first on a line outside them is a
// table header. Valid TOML without dates never trips the check; invalid text it misreads is
// refused by TOMLKit as before.

enum TOMLPreflight {
    /// Text toml++ would abort on: (line, column, reason), 1-based; nil if none.
    static func problem(in text: String) -> (line: Int, column: Int, reason: String)? {
        var bytes = Array(text.utf8)
        if bytes.starts(with: [0xEF, 0xBB, 0xBF]) { bytes.removeFirst(3) }   // a BOM is skipped
        var i = 0, line = 1, lineStart = 0
        var open: [UInt8] = []        // the [ and { of values not closed yet
        var atLineStart = true        // only spaces/tabs so far on this line
        var expectingValue = false    // after '=', '[' of an array, ',' in an array

        func isKeyStart(_ c: UInt8) -> Bool {
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
                || c == 0x5F || c == 0x2D || c == 0x22 || c == 0x27 || c == 0x5D   // A-Z a-z 0-9 _ - " ' ]
        }
        func describe(_ j: Int) -> String {
            guard j < bytes.count, bytes[j] != 0x0A, bytes[j] != 0x0D else { return "the end of the line" }
            let scalar = String(decoding: bytes[j...].prefix(4), as: UTF8.self).unicodeScalars.first
            return "'\(scalar.map { $0.escaped(asASCII: true) } ?? "?")'"
        }
        func skipString(quote: UInt8) {
            let multi = i + 2 < bytes.count && bytes[i + 1] == quote && bytes[i + 2] == quote
            i += multi ? 3 : 1
            while i < bytes.count {
                let c = bytes[i]
                if c == 0x0A {
                    if !multi { return }   // an unterminated one-line string ends at the line's end
                    line += 1; lineStart = i + 1
                } else if c == 0x5C && quote == 0x22 {
                    i += 1                 // an escape in a basic string: the next byte is taken as is
                    if i < bytes.count && bytes[i] == 0x0A { if !multi { return }; line += 1; lineStart = i + 1 }
                } else if c == quote {
                    if !multi { i += 1; return }
                    if i + 2 < bytes.count && bytes[i + 1] == quote && bytes[i + 2] == quote {
                        i += 3
                        var extra = 0   // up to two quotes before the closing three belong to the string
                        while extra < 2 && i < bytes.count && bytes[i] == quote { i += 1; extra += 1 }
                        return
                    }
                }
                i += 1
            }
        }

        while i < bytes.count {
            let c = bytes[i]
            switch c {
            case 0x0A:
                line += 1; lineStart = i + 1; atLineStart = true
                if open.isEmpty { expectingValue = false }
                i += 1
                continue
            case 0x20, 0x09, 0x0D:
                i += 1
                continue
            case 0x23:   // comment: to the end of the line
                while i < bytes.count && bytes[i] != 0x0A { i += 1 }
                continue
            case 0x22, 0x27:
                skipString(quote: c)
                expectingValue = false
            case 0x5B where atLineStart && open.isEmpty:
                // A table header: `[` or `[[`, spaces or tabs, then the name.
                var j = i + 1
                let opening = j < bytes.count && bytes[j] == 0x5B ? "[[" : "["
                if opening == "[[" { j += 1 }
                while j < bytes.count && (bytes[j] == 0x20 || bytes[j] == 0x09) { j += 1 }
                if j < bytes.count && !isKeyStart(bytes[j]) {
                    return (line, i - lineStart + 1, "a table header needs a name after '\(opening)', found \(describe(j))")
                }
                while i < bytes.count && bytes[i] != 0x0A { i += 1 }   // the rest of the header line
                continue
            case 0x5B:
                open.append(c); expectingValue = true; i += 1
            case 0x7B:
                open.append(c); expectingValue = false; i += 1
            case 0x5D, 0x7D:
                if c == 0x7D && open.last == 0x5B {
                    return (line, i - lineStart + 1, "'}' inside an array (an inline table closes only what '{' opened)")
                }
                _ = open.popLast(); expectingValue = false; i += 1
            case 0x2C:   // ','
                expectingValue = open.last == 0x5B; i += 1
            case 0x3D:   // '='
                expectingValue = true; i += 1
            default:
                guard expectingValue else { i += 1; break }
                // A bare value: up to the next space, tab, line end, ',', ']', '}' or '#'.
                let start = i
                while i < bytes.count, ![0x20, 0x09, 0x0A, 0x0D, 0x2C, 0x5D, 0x7D, 0x23].contains(bytes[i]) { i += 1 }
                let token = bytes[start..<i]
                expectingValue = false
                if !isBareValue(token) {
                    let shown = String(decoding: token.prefix(40), as: UTF8.self).unicodeScalars.map { $0.escaped(asASCII: true) }.joined()
                    return (line, start - lineStart + 1,
                            "'\(shown)' is not a value this file can hold (a number, \"string\", true/false, [array] or {table}; dates and times are not used)")
                }
            }
            atLineStart = false
        }
        return nil
    }

    /// true, false, or a TOML 1.0 integer or float (decimal with optional sign, `_` between
    /// digits, no leading zeros; 0x/0o/0b; fraction and exponent; inf and nan).
    static func isBareValue<C: Collection>(_ token: C) -> Bool where C.Element == UInt8 {
        var t = Array(token)
        if t == Array("true".utf8) || t == Array("false".utf8) { return true }
        if t.count > 2 && t[0] == 0x30 && [0x78, 0x6F, 0x62].contains(t[1]) {   // 0x 0o 0b
            switch t[1] {
            case 0x78: return digits(t[2...], isHexDigit)
            case 0x6F: return digits(t[2...]) { $0 >= 0x30 && $0 <= 0x37 }
            default: return digits(t[2...]) { $0 == 0x30 || $0 == 0x31 }
            }
        }
        if let s = t.first, s == 0x2B || s == 0x2D { t.removeFirst() }   // + -
        if t == Array("inf".utf8) || t == Array("nan".utf8) { return true }
        let isDigit: (UInt8) -> Bool = { $0 >= 0x30 && $0 <= 0x39 }
        // integer part: 0 or a digit run without a leading zero
        let intEnd = t.firstIndex { $0 == 0x2E || $0 == 0x65 || $0 == 0x45 } ?? t.count
        let intPart = t[..<intEnd]
        guard digits(intPart, isDigit), intPart.first != 0x30 || intPart.count == 1 else { return false }
        var rest = t[intEnd...]
        if rest.first == 0x2E {   // .fraction
            rest = rest.dropFirst()
            let end = rest.firstIndex { $0 == 0x65 || $0 == 0x45 } ?? rest.endIndex
            guard digits(rest[..<end], isDigit) else { return false }
            rest = rest[end...]
        }
        if let e = rest.first, e == 0x65 || e == 0x45 {   // e[+-]exponent
            rest = rest.dropFirst()
            if let s = rest.first, s == 0x2B || s == 0x2D { rest = rest.dropFirst() }
            return digits(rest, isDigit)
        }
        return rest.isEmpty
    }

    private static func isHexDigit(_ c: UInt8) -> Bool {
        let lower = c | 0x20
        return (c >= 0x30 && c <= 0x39) || (lower >= 0x61 && lower <= 0x66)
    }

    /// One or more digits, single `_` only between two digits.
    private static func digits(_ s: ArraySlice<UInt8>, _ isDigit: (UInt8) -> Bool) -> Bool {
        guard let f = s.first, let l = s.last, isDigit(f), isDigit(l) else { return false }
        var previousUnderscore = false
        for c in s {
            if c == 0x5F { if previousUnderscore { return false }; previousUnderscore = true; continue }
            guard isDigit(c) else { return false }
            previousUnderscore = false
        }
        return true
    }
}
