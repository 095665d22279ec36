// End-to-end checks on the real default model (SmolLM2-135M-Instruct Q4_1) through the binary.
import Foundation
import TestSupport
import XCTest

final class DefaultModelTests: XCTestCase {
    func requireModel() throws -> String? {
        guard let m = TestPaths.defaultModel else {
            if TestPaths.modelRequired { XCTFail("default model missing") }
            return nil
        }
        return m
    }

    /// Invariant: greedy generation answers the capital question with Paris.
    func testGenerateNamesParis() throws {
        guard try requireModel() != nil else { return }
        let r = try DTrainProcess.run(["generate", "-p", "What is the capital of France?", "--max-tokens", "24"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("Paris"), r.stdout)
        XCTAssertTrue(r.stderr.contains("tokens/s"))
    }

    /// Invariant: evaluation split over 2 MPI ranks gives the single-process NLL (to 1e-5).
    func testEvalUnderMPIMatchesSingleProcess() throws {
        guard try requireModel() != nil else { return }
        let text = temporaryDirectory() + "/text.txt"
        let body = (0..<40).map { "Line \($0): the quick brown fox jumps over the lazy dog while counting to \($0 * 7)." }.joined(separator: "\n")
        try body.write(toFile: text, atomically: true, encoding: .utf8)
        let one = try DTrainProcess.run(["eval", "--data", text, "--context", "128", "--json"])
        let two = try DTrainProcess.run(["eval", "--data", text, "--context", "128", "--json"], ranks: 2)
        XCTAssertEqual(one.status, 0, one.stderr); XCTAssertEqual(two.status, 0, two.stderr)
        func nll(_ s: String) throws -> Double {
            let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any])
            return try XCTUnwrap(obj["mean_nll"] as? Double)
        }
        let a = try nll(one.stdout), b = try nll(two.stdout)
        XCTAssertEqual(a, b, accuracy: 1e-5)
        XCTAssertGreaterThan(a, 0.5)
    }

    func testInspectDescribesTheModel() throws {
        guard try requireModel() != nil else { return }
        let r = try DTrainProcess.run(["inspect"])
        XCTAssertEqual(r.status, 0, r.stderr)
        for fragment in ["architecture: llama", "layers 30", "heads 9, kv heads 3", "Q4_1", "chat template: chatml", "smollm"] {
            XCTAssertTrue(r.stdout.contains(fragment), "inspect lacks '\(fragment)':\n\(r.stdout)")
        }
    }
}
