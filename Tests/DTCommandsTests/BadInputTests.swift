// Bad input through the CLI: each case exits non-zero with a message naming the file and the line, byte
// offset or key, and writes nothing half-done.
import Foundation
import TestSupport
import XCTest

final class BadInputTests: XCTestCase {
    var model = ""

    override func setUp() {
        let dir = TinyModel.writeWithTokenizer()
        model = dir
    }

    func expectFailure(_ args: [String], mentions fragments: [String], ranks: Int = 0, file: StaticString = #filePath, line: UInt = #line) throws {
        let r = try DTrainProcess.run(args, ranks: ranks, timeout: 120)
        XCTAssertNotEqual(r.status, 0, "should fail: \(args)", file: file, line: line)
        for f in fragments { XCTAssertTrue(r.stderr.contains(f), "stderr lacks '\(f)':\n\(r.stderr)", file: file, line: line) }
        XCTAssertFalse(r.stderr.contains("Fatal error") || r.stderr.contains("Crash"), "must not crash:\n\(r.stderr)", file: file, line: line)
    }

    func write(_ text: String, _ name: String) -> String {
        let path = temporaryDirectory() + "/" + name
        FileManager.default.createFile(atPath: path, contents: Data(text.utf8))
        return path
    }

    func testMalformedJSONLLineIsNamed() throws {
        let data = write("{\"text\": \"fine\"}\n{\"text\": \"also fine\"}\n{\"text\": broken}\n", "bad.jsonl")
        try expectFailure(["train", "--model", model, "--data", data, "--output", temporaryDirectory()], mentions: [data, "line 3", "malformed JSON"])
    }

    func testMissingFieldIsNamed() throws {
        let data = write("{\"prompt\": \"hi\"}\n", "missing.jsonl")
        try expectFailure(["train", "--model", model, "--data", data, "--output", temporaryDirectory()], mentions: [data, "line 1", "completion"])
    }

    func testEmptyDatasetIsRefused() throws {
        let data = write("\n\n", "empty.jsonl")
        try expectFailure(["train", "--model", model, "--data", data, "--output", temporaryDirectory()], mentions: [data, "empty"])
    }

    func testOverlongSampleWithNoTargetsLeftIsRefused() throws {
        let data = write("{\"prompt\": \"\(String(repeating: "word ", count: 100))\", \"completion\": \"answer\"}\n", "long.jsonl")
        try expectFailure(["train", "--model", model, "--data", data, "--max-length", "16", "--output", temporaryDirectory()],
                          mentions: [data, "line 1", "truncation"])
    }

    func testUnknownConfigKeyIsNamed() throws {
        let config = write("learning_rate: 0.001\nlearnin_rate: 3\n", "run.yaml")
        try expectFailure(["train", "--config", config, "--data", "x.jsonl"], mentions: [config, "learnin_rate", "unknown configuration key"])
        let typed = write("batch_size: many\n", "typed.yaml")
        try expectFailure(["train", "--config", typed, "--data", "x.jsonl"], mentions: [typed, "batch_size", "expected an integer"])
    }

    func testInvalidUTF8IsReportedWithOffset() throws {
        let path = temporaryDirectory() + "/bad.txt"
        FileManager.default.createFile(atPath: path, contents: Data("hello\nwor".utf8) + Data([0xFF, 0xFE]) + Data("ld".utf8))
        try expectFailure(["eval", "--model", model, "--data", path], mentions: [path, "byte offset 9", "line 2", "UTF-8"])
    }

    func testCorruptModelIsReported() throws {
        let path = write("GGUF but not really", "broken.gguf")
        try expectFailure(["generate", "--model", path, "-p", "hi"], mentions: [path, "byte offset"])
        try expectFailure(["inspect", path], mentions: [path])
    }

    /// Invariant: an error on one rank stops every rank with the message (no hang in a collective).
    func testErrorUnderMPIStopsAllRanks() throws {
        let data = write("{\"text\": broken}\n", "bad.jsonl")
        try expectFailure(["train", "--model", model, "--data", data, "--output", temporaryDirectory()], mentions: [data, "line 1"], ranks: 2)
    }
}
