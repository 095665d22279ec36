// Prompt tuning and the linear probe through the binary, on one rank and on two: the same prompt
// embeddings, bit-identical cached features, the same probe head; predictions written as JSONL.
import DTFormats
import Foundation
import TestSupport
import XCTest

final class LightMethodsTests: XCTestCase {
    static var model = ""
    static var chat = "", labelled = "", labelledValid = ""

    override class func setUp() {
        let dir = TinyModel.writeWithTokenizer(seed: 12)
        model = dir
        chat = dir + "/chat.jsonl"
        try? (0..<16).map { i in #"{"messages": [{"role": "user", "content": "in the sun \#(i)"}, {"role": "assistant", "content": "then the rain \#(i % 3)"}]}"# }
            .joined(separator: "\n").write(toFile: chat, atomically: true, encoding: .utf8)
        let classes = ["sun", "rain", "ant"]
        func rows(_ range: Range<Int>) -> String {
            range.map { i in #"{"text": "the \#(classes[i % 3]) and \#(classes[i % 3]) \#(i)", "label": "\#(classes[i % 3])"}"# }.joined(separator: "\n")
        }
        labelled = dir + "/labelled.jsonl"; labelledValid = dir + "/labelled-valid.jsonl"
        try? rows(0..<30).write(toFile: labelled, atomically: true, encoding: .utf8)
        try? rows(30..<42).write(toFile: labelledValid, atomically: true, encoding: .utf8)
    }

    /// Invariant: prompt tuning on 2 ranks gives the 1-rank prompt embeddings (1e-4) and a PEFT directory.
    func testPromptTuningTwoRanksMatchOne() throws {
        let one = temporaryDirectory(), two = temporaryDirectory()
        let args = ["train", "--method", "prompt", "--model", Self.model, "--data", Self.chat, "--max-steps", "4", "--batch-size", "8",
                    "--micro-batch-size", "4", "--learning-rate", "0.05", "--num-virtual-tokens", "4", "--threads", "1"]
        let r1 = try DTrainProcess.run(args + ["--output", one])
        let r2 = try DTrainProcess.run(args + ["--output", two], ranks: 2)
        XCTAssertEqual(r1.status, 0, r1.stderr); XCTAssertEqual(r2.status, 0, r2.stderr)
        let a = try SafetensorsFile(path: one + "/final/adapter_model.safetensors").floats("prompt_embeddings")
        let b = try SafetensorsFile(path: two + "/final/adapter_model.safetensors").floats("prompt_embeddings")
        XCTAssertEqual(a.count, 4 * 32)
        XCTAssertLessThanOrEqual(relativeDifference(a, b), 1e-4)
        let config = try String(contentsOfFile: one + "/final/adapter_config.json", encoding: .utf8)
        XCTAssertTrue(config.contains("\"PROMPT_TUNING\"") && config.contains("\"num_virtual_tokens\" : 4"), config)
        let g = try DTrainProcess.run(["generate", "--model", Self.model, "--adapter", one + "/final", "-p", "in the sun", "--max-tokens", "4"])
        XCTAssertEqual(g.status, 0, g.stderr)
    }

    /// Invariant: features extracted by 2 ranks are bit-identical to 1 rank's, and so is the trained head.
    func testProbeTwoRanksMatchOneAndPredicts() throws {
        let one = temporaryDirectory(), two = temporaryDirectory()
        let args = ["train", "--method", "probe", "--model", Self.model, "--data", Self.labelled, "--valid-data", Self.labelledValid,
                    "--probe-epochs", "50", "--threads", "1"]
        let r1 = try DTrainProcess.run(args + ["--output", one])
        let r2 = try DTrainProcess.run(args + ["--output", two], ranks: 2)
        XCTAssertEqual(r1.status, 0, r1.stderr); XCTAssertEqual(r2.status, 0, r2.stderr)
        for f in ["features-train.safetensors", "features-valid.safetensors"] {
            let a = try SafetensorsFile(path: one + "/" + f).floats("features"), b = try SafetensorsFile(path: two + "/" + f).floats("features")
            XCTAssertEqual(a.map(\.bitPattern), b.map(\.bitPattern), f)
        }
        let w1 = try SafetensorsFile(path: one + "/final/probe_head.safetensors").floats("score.weight")
        let w2 = try SafetensorsFile(path: two + "/final/probe_head.safetensors").floats("score.weight")
        XCTAssertEqual(w1.count, 3 * 32)
        XCTAssertLessThanOrEqual(relativeDifference(w1, w2), 1e-6)
        XCTAssertTrue(r1.stderr.contains("valid: accuracy") && r1.stderr.contains("macro-F1") && r1.stderr.contains("confusion matrix"), r1.stderr)
        // The cache is reused when the run is repeated over the first one (--overwrite keeps the feature caches).
        let again = try DTrainProcess.run(args + ["--output", one, "--probe-epochs", "5", "--overwrite", "true"])
        XCTAssertTrue(again.stderr.contains("reusing the cache"), again.stderr)
        let predictions = temporaryDirectory() + "/p.jsonl"
        let p = try DTrainProcess.run(["predict", "--model", Self.model, "--adapter", one + "/final", "--data", Self.labelledValid, "--output", predictions])
        XCTAssertEqual(p.status, 0, p.stderr)
        let lines = try String(contentsOfFile: predictions, encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(lines.count, 12)
        let first = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(lines[0].utf8)) as? [String: Any])
        let probabilities = try XCTUnwrap(first["probabilities"] as? [String: Double])
        XCTAssertEqual(Set(probabilities.keys), ["sun", "rain", "ant"])
        XCTAssertEqual(probabilities.values.reduce(0, +), 1, accuracy: 1e-9)
    }

    /// Numeric labels make a regression probe (MSE) reporting RMSE and R²; predict writes values.
    func testRegressionProbe() throws {
        let dir = temporaryDirectory()
        let rows = (0..<24).map { i in #"{"text": "the sun \#(i % 4) and rain", "label": \#(Double(i % 4) * 1.5)}"# }
        try rows.joined(separator: "\n").write(toFile: dir + "/r.jsonl", atomically: true, encoding: .utf8)
        let r = try DTrainProcess.run(["train", "--method", "probe", "--model", Self.model, "--data", dir + "/r.jsonl",
                                       "--valid-data", dir + "/r.jsonl", "--output", dir + "/run", "--probe-epochs", "300",
                                       "--probe-learning-rate", "0.05", "--early-stopping-patience", "0"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stderr.contains("regression") && r.stderr.contains("RMSE") && r.stderr.contains("R²"), r.stderr)
        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/run/final/probe_config.json"))) as? [String: Any])
        let valid = try XCTUnwrap((config["metrics"] as? [String: Any])?["valid"] as? [String: Any])
        XCTAssertGreaterThan(try XCTUnwrap(valid["r2"] as? Double), 0.9, "4 distinct texts → 4 values must be fitted")
        let p = try DTrainProcess.run(["predict", "--model", Self.model, "--adapter", dir + "/run/final", "--data", dir + "/r.jsonl"])
        XCTAssertEqual(p.status, 0, p.stderr)
        XCTAssertTrue(p.stdout.contains("\"value\""), p.stdout)
    }

    func testProbeLabelNotInTrainingSetIsNamed() throws {
        let bad = temporaryDirectory() + "/v.jsonl"
        try #"{"text": "x", "label": "snow"}"#.write(toFile: bad, atomically: true, encoding: .utf8)
        let r = try DTrainProcess.run(["train", "--method", "probe", "--model", Self.model, "--data", Self.labelled, "--valid-data", bad,
                                       "--output", temporaryDirectory()])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains(bad) && r.stderr.contains("line 1") && r.stderr.contains("snow"), r.stderr)
    }
}
