// Configuration text that made TOMLKit's parser (toml++) abort the process (a table header
// without a name, a '}' inside an array, a malformed date-time) is refused as a syntax error
// naming line and column (Fuzz/Targets/FuzzConfig found it; its corpus keeps the
// input), and valid TOML with brackets in strings, arrays and comments still parses.
import Testing
@testable import Config

@Suite struct TOMLPreflightTests {
    @Test(arguments: [
        ("[[!bridges]]\n", "t.toml: line 1, column 1: a table header needs a name after '[[', found '!'"),
        ("workers = 2\n  [ \u{202E}x]\n", "t.toml: line 2, column 3: a table header needs a name after '[', found '\\u{202E}'"),
        ("# c\n[\nname = \"x\"\n", "t.toml: line 2, column 1: a table header needs a name after '[', found the end of the line"),
        ("\u{FEFF}[[.bridges]]\n", "t.toml: line 1, column 1: a table header needs a name after '[[', found '.'"),
        ("[[bridges]]\npipeline = [\"filter\",}\"learning-switch\"]\n",
         "t.toml: line 2, column 22: '}' inside an array (an inline table closes only what '{' opened)"),
        ("s = 1979-05-27T\u{1B}7\n",
         "t.toml: line 1, column 5: '1979-05-27T\\u{1B}7' is not a value this file can hold (a number, \"string\", true/false, [array] or {table}; dates and times are not used)"),
    ])
    func textTOMLKitAbortsOnIsASyntaxError(text: String, expected: String) {
        // Before: toml++'s parse_key / parse_value assertions aborted `config check`, `run`
        // and a SIGHUP reload.
        #expect(issues(text) == [expected])
    }

    @Test func bracketsInsideValuesStringsAndCommentsAreNotHeaders() throws {
        let text = """
            # [!not a header]
            log-level = "info" # [!nor this]
            [[bridges]]
            name = "lan"
            pipeline = ["filter"]
            [bridges.filter]
            rules = [
              "deny @block-mac 52:54:00:00:00:66",
            [
            ]
            ]
            """
        // (an array inside the rules array is a type error, not a header)
        #expect(!issues(text).contains { $0.contains("table header") })
        let strings = """
            [[bridges]]
            name = \"\"\"
            [!inside a multi-line string]\"\"\"
            [[bridges.ports]]
            name = 'x'
            parent = "eth0"
            """
        #expect(!issues(strings).contains { $0.contains("table header") })
        #expect(TOMLPreflight.problem(in: "a = '''\n[!x]\n'''\nb = \"\"\"\n\\\"\"\"\n[!y]\"\"\"\n[ \"quoted\" ]\n") == nil)
        #expect(TOMLPreflight.problem(in: "s = [{ mac = \"52:54:00:00:00:09\", port = \"b\" }, {a = [1, {b = 2}]}]\n") == nil)
    }

    @Test func bareValuesAreBooleansAndTOMLNumbersOnly() {
        for ok in ["0", "+1", "-0", "1_000", "0xDEAD_beef", "0o755", "0b1010", "3.14", "-0.5e-3", "1E6", "6e+2",
                   "inf", "-nan", "+inf", "true", "false"] {
            #expect(TOMLPreflight.isBareValue(Array(ok.utf8)), "\(ok)")
        }
        for bad in ["01", "1__0", "_1", "1_", "1.", ".5", "0x", "1e", "1979-05-27", "07:32:00", "True", "0x-1", "+0x1", "1.e5", "--1", ""] {
            #expect(!TOMLPreflight.isBareValue(Array(bad.utf8)), "\(bad)")
        }
        // Values in arrays, inline tables and after '=' are all checked; strings are not.
        #expect(TOMLPreflight.problem(in: "a = [1, 2.5, -inf, true, \"1979-05-27\", [0x1f]]\nb = { c = 1_0, d = 'x' }\n") == nil)
        #expect(TOMLPreflight.problem(in: "a = [1,\n  07:00,\n]\n")?.line == 2)
    }
}
