// Text files written on Windows read as the same text as on Unix: JSONL lines, their numbers in errors, and
// plain text for training or evaluation.
import DTFormats
import Foundation
import TestSupport
import XCTest

final class TextFilesTests: XCTestCase {
    func write(_ text: String) -> String {
        let path = temporaryDirectory() + "/data.jsonl"
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    /// Invariant: LF, CRLF, and a last line without a newline give the same JSONL objects with the same
    /// line numbers (blank lines skipped but counted).
    func testCRLFJSONLReadsLikeLF() throws {
        let lines = [#"{"text": "first line"}"#, "", #"{"text": "a \"quoted\" word, then more"}"#, #"{"text": "last"}"#]
        let unix = try TextFiles.readJSONL(write(lines.joined(separator: "\n") + "\n"))
        for text in [lines.joined(separator: "\r\n") + "\r\n", lines.joined(separator: "\r\n")] {
            let windows = try TextFiles.readJSONL(write(text))
            XCTAssertEqual(windows.map(\.line), [1, 3, 4])
            XCTAssertEqual(windows.map(\.line), unix.map(\.line))
            XCTAssertEqual(windows.map { $0.object["text"] as? String }, unix.map { $0.object["text"] as? String })
        }
    }

    /// Invariant: a malformed line is reported with its number whatever the line endings.
    func testCRLFErrorNamesTheLine() throws {
        let path = write(#"{"text": "ok"}"# + "\r\n" + #"{"text": broken"# + "\r\n" + #"{"text": "ok"}"# + "\r\n")
        XCTAssertThrowsError(try TextFiles.readJSONL(path)) { error in
            XCTAssertTrue("\(error)".contains("line 2"), "\(error)")
        }
    }

    /// Invariant: plain text reads the same with CRLF as with LF (so it tokenizes the same); a lone CR stays.
    func testCRLFPlainTextReadsLikeLF() throws {
        XCTAssertEqual(try TextFiles.readUTF8(write("one\r\ntwo\r\n\r\nthree")), "one\ntwo\n\nthree")
        XCTAssertEqual(try TextFiles.readUTF8(write("a\rb\n")), "a\rb\n")
    }

    /// Invariant: a UTF-8 byte order mark at the start (Notepad writes one) is not part of the text, so the first
    /// JSONL line parses.
    func testByteOrderMarkIsDropped() throws {
        XCTAssertEqual(try TextFiles.readUTF8(write("\u{FEFF}one\ntwo")), "one\ntwo")
        XCTAssertEqual(try TextFiles.readJSONL(write("\u{FEFF}" + #"{"text": "a"}"# + "\r\n")).map(\.line), [1])
        XCTAssertEqual(try TextFiles.readUTF8(write("a\u{FEFF}b")), "a\u{FEFF}b", "only a leading mark is dropped")
    }
}
