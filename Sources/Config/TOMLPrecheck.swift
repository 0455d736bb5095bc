// TOMLPrecheck: what the TOML library (TOMLKit over toml++ 3) must not be given. toml++ asserts
// (aborting a debug build, undefined in a release one) on a table header whose `[` or `[[` is
// followed by anything but a key: `[#`, `[` at the end of a line, `[ =`. Found by
// ConfigMutationTests; this scan refuses such a header with its line and column before the text
// reaches the library. It follows strings, comments and value brackets so a `[` inside a value
// (a nested array on its own line) is not taken for a header.
enum TOMLPrecheck {
    /// "line L, column C: reason" for the first header toml++ cannot take, or nil.
    static func problem(in text: String) -> String? {
        let b = Array(text.utf8)
        var i = 0, line = 1, lineStart = 0
        var depth = 0                      // open [ and { of values
        var atLineStart = true             // only blanks since the line began
        func isKeyStart(_ c: UInt8) -> Bool {
            (c >= 0x41 && c <= 0x5A) || (c >= 0x61 && c <= 0x7A) || (c >= 0x30 && c <= 0x39)
                || c == 0x5F || c == 0x2D || c == 0x22 || c == 0x27
        }
        func skipBlanks(_ j: inout Int) { while j < b.count, b[j] == 0x20 || b[j] == 0x09 { j += 1 } }
        func skipString(_ j: inout Int) {
            // at an opening quote: basic "...", literal '...', or multi-line """...""" / '''...'''
            let q = b[j]
            if j + 2 < b.count, b[j + 1] == q, b[j + 2] == q {
                j += 3
                while j < b.count {
                    if b[j] == 0x0A { line += 1; lineStart = j + 1 }
                    if q == 0x22, b[j] == 0x5C { j += 2; continue }
                    if j + 2 < b.count, b[j] == q, b[j + 1] == q, b[j + 2] == q {
                        j += 3
                        while j < b.count, b[j] == q { j += 1 }   // up to two more quotes belong to the string
                        return
                    }
                    j += 1
                }
                return
            }
            j += 1
            while j < b.count, b[j] != 0x0A {
                if q == 0x22, b[j] == 0x5C { j += 2; continue }
                if b[j] == q { j += 1; return }
                j += 1
            }
        }
        while i < b.count {
            let c = b[i]
            switch c {
            case 0x0A:
                line += 1; lineStart = i + 1; atLineStart = true; i += 1; continue
            case 0x20, 0x09, 0x0D:
                i += 1; continue
            case 0x23:   // comment to the end of the line
                while i < b.count, b[i] != 0x0A { i += 1 }
                continue
            case 0x22, 0x27:
                skipString(&i)
            case 0x5B where atLineStart && depth == 0:
                // A table header: `[` or `[[`, blanks, then a key must start.
                var j = i + 1
                skipBlanks(&j)
                if j < b.count, b[j] == 0x5B, j == i + 1 { j += 1; skipBlanks(&j) }
                if j >= b.count || !isKeyStart(b[j]) {
                    return "line \(line), column \(j - lineStart + 1): a table header needs a key after '['"
                }
                // The rest of the header line is the library's to judge; values start afresh after it.
                while i < b.count, b[i] != 0x0A {
                    if b[i] == 0x22 || b[i] == 0x27 { skipString(&i) } else { i += 1 }
                }
                continue
            case 0x5B, 0x7B:
                depth += 1; i += 1
            case 0x5D, 0x7D:
                depth = max(0, depth - 1); i += 1
            default:
                i += 1
            }
            atLineStart = false
        }
        return nil
    }
}
