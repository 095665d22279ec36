// `dtrain plan` measured against the runs it plans: the same keys given to `dtrain plan` and `dtrain train`.
import Foundation
import TestSupport
import XCTest

final class PlanCommandTests: XCTestCase {
    var root: String { TestPaths.repoRoot }

    /// The MiB figures after `label` in a log line (one per rank: "rank 0 12.3 MiB, rank 1 …"; KiB converted).
    func figures(_ log: String, _ label: String) throws -> [Double] {
        let line = try XCTUnwrap(log.split(separator: "\n").first { $0.contains(label) }, "no '\(label)' in:\n\(log)")
        let text = line.components(separatedBy: label)[1].components(separatedBy: "(")[0]
        var out: [Double] = []
        let words = text.split(whereSeparator: { $0 == " " || $0 == "," })
        for (i, w) in words.enumerated() where i > 0 && (w == "MiB" || w == "KiB" || w == "GiB") {
            let v = try XCTUnwrap(Double(words[i - 1]), String(line))
            out.append(w == "MiB" ? v : w == "KiB" ? v / 1024 : v * 1024)
        }
        return out
    }

    /// Invariant: what the plan extrapolates from its probes of 1 and 2 layers is what the whole model's run
    /// holds — base, trainable state and activations to the printed 0.1 MiB — and the peak RSS it expects is
    /// within 15% of the run's measured peak, for QLoRA (NF4 at load, bf16 products) on one rank and QLoRA over
    /// the GGUF blocks as stored, sharded on two ranks (each rank's figures).
    func testPlanAgreesWithTheRunItPlans() throws {
        guard let model = TestPaths.defaultModel else {
            if TestPaths.modelRequired { XCTFail("default model missing") }
            return
        }
        let cases: [([String], Int)] = [
            (["--method", "qlora", "--quant", "nf4", "--batch-size", "4", "--max-length", "256"], 0),
            (["--method", "qlora", "--quant", "as-stored", "--batch-size", "4", "--max-length", "256"], 2),
        ]
        for (keys, ranks) in cases {
            let common = ["--model", model, "--data", root + "/data/instruct/train.jsonl", "--max-steps", "2", "--threads", ranks > 0 ? "1" : "2"] + keys
            let plan = try DTrainProcess.run(["plan"] + common, ranks: ranks)
            XCTAssertEqual(plan.status, 0, plan.stderr)
            let out = temporaryDirectory()
            let run = try DTrainProcess.run(["train", "--output", out, "--tensorboard", "false", "--save-every", "0"] + common, ranks: ranks)
            XCTAssertEqual(run.status, 0, run.stderr)
            let label = "\(keys.joined(separator: " ")) on \(max(1, ranks)) rank(s)"
            let memoryLine = try XCTUnwrap(run.stderr.split(separator: "\n").first { $0.contains("memory per rank: base") }, run.stderr)
            // The run prints rank 0's base, trainable+optimizer and activations.
            for (planLabel, runLabel) in [("frozen base", "base "), ("trainable + optimizer", "trainable+optimizer "), ("activations  ", "activations ")] {
                let planned = try figures(plan.stderr, planLabel)[0]
                let text = String(memoryLine).components(separatedBy: runLabel)[1].split(separator: " ").prefix(2).joined(separator: " ")
                let held = try figures("x " + text, "x")[0]
                XCTAssertEqual(planned, held, accuracy: 0.11, "\(label): \(planLabel) planned \(planned) MiB, the run holds \(held) MiB")
            }
            let expected = try figures(plan.stderr, "peak RSS  "), measured = try figures(run.stderr, "peak RSS per rank:")
            XCTAssertEqual(expected.count, max(1, ranks), plan.stderr)
            XCTAssertEqual(measured.count, max(1, ranks), run.stderr)
            for (e, m) in zip(expected, measured) {
                XCTAssertLessThanOrEqual(abs(e - m), 0.15 * m, "\(label): plan expects a peak of \(e) MiB, the run peaked at \(m) MiB\n\(plan.stderr)")
            }
            XCTAssertFalse(FileManager.default.fileExists(atPath: out + "/final") && plan.stderr.contains(out), "plan writes nothing")
        }
    }

    /// Invariant: plan refuses what train refuses, before probing — no data, a linear probe, an unknown key.
    func testPlanRefusesWhatTrainRefuses() throws {
        let tiny = TinyModel.writeWithTokenizer()
        let noData = try DTrainProcess.run(["plan", "--model", tiny])
        XCTAssertEqual(noData.status, 1)
        XCTAssertTrue(noData.stderr.contains("no training data"), noData.stderr)
        let data = temporaryDirectory() + "/d.txt"
        try "hello world\n".write(toFile: data, atomically: true, encoding: .utf8)
        let probe = try DTrainProcess.run(["plan", "--model", tiny, "--data", data, "--method", "probe"])
        XCTAssertNotEqual(probe.status, 0)
        XCTAssertTrue(probe.stderr.contains("dtrain plan covers lora, qlora and prompt"), probe.stderr)
        let steps = try DTrainProcess.run(["plan", "--model", tiny, "--data", data, "--probe-steps", "0"])
        XCTAssertEqual(steps.status, 1)
        XCTAssertTrue(steps.stderr.contains("--probe-steps: expected 1 to 1000"), steps.stderr)
    }
}
