// Strict JSON reads: an integer key takes only a JSON integer, a number key a number, a bool key true/false;
// every refusal names the file, the key and what was found.
import DTFormats
import Foundation
import XCTest

final class JSONFieldsTests: XCTestCase {
    func fields(_ json: String) throws -> JSONFields {
        JSONFields(file: "config.json", object: try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(json.utf8)) as? [String: Any]))
    }

    func refuses(_ body: () throws -> Any, _ fragments: [String], line: UInt = #line) {
        XCTAssertThrowsError(try body(), line: line) { e in
            for f in ["config.json"] + fragments { XCTAssertTrue("\(e)".contains(f), "'\(e)' lacks '\(f)'", line: line) }
        }
    }

    /// Invariant: 64.5, 64.0, true and "64" are not integers (no silent truncation to 64 or 1); ranges hold.
    func testIntegersAreJSONIntegersInRange() throws {
        let f = try fields(#"{"a": 64, "b": 64.5, "c": 64.0, "d": true, "e": "64", "f": -3, "g": 12345678901234567890, "n": null}"#)
        XCTAssertEqual(try f.integer("a"), 64)
        refuses({ try f.integer("b") }, ["key 'b'", "64.5"])
        refuses({ try f.integer("c") }, ["key 'c'", "integer"])
        refuses({ try f.integer("d") }, ["key 'd'", "true"])
        refuses({ try f.integer("e") }, ["key 'e'", "a string"])
        refuses({ try f.integer("f", in: 1...10) }, ["key 'f'", "in [1, 10]", "-3"])
        refuses({ try f.integer("g") }, ["key 'g'"])
        refuses({ try f.integer("missing") }, ["key 'missing'", "missing"])
        XCTAssertEqual(try f.integer("n", default: 7), 7, "null counts as absent")
    }

    /// Invariant: numbers are never bools or strings and satisfy their condition; bools are only true/false.
    func testNumbersAndBoolsAreStrict() throws {
        let f = try fields(#"{"x": 1e-5, "i": 3, "t": true, "s": "16", "z": 0, "one": 1, "list": [1, "a"]}"#)
        XCTAssertEqual(try f.number("x"), 1e-5)
        XCTAssertEqual(try f.number("i"), 3)
        refuses({ try f.number("t") }, ["key 't'", "true"])
        refuses({ try f.number("s") }, ["key 's'", "\"16\" (a string)"])
        refuses({ try f.number("z", expected: "a positive number", where: { $0 > 0 }) }, ["key 'z'", "a positive number"])
        XCTAssertEqual(try f.bool("t"), true)
        refuses({ try f.bool("one") }, ["key 'one'", "true or false", "found 1"])
        refuses({ try f.strings("list") }, ["key 'list[0]'", "a string"])
    }
}
