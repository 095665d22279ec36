// `dtrain bench train|prompt|step` time the real training step (Trainer.step) on random tokens: their lines
// report a throughput and the kernel, the profile shows the stages only Trainer.step measures, and `step` under
// mpirun reports the all-reduce's share.
import Foundation
import TestSupport
import XCTest

final class BenchCommandTests: XCTestCase {
    static let model = TinyModel.writeWithTokenizer(seed: 5)

    func bench(_ args: [String], ranks: Int = 1) throws -> String {
        let r = try DTrainProcess.run(["bench"] + args + ["--model", Self.model, "--batch", "2", "--length", "16", "--iterations", "2",
                                                          "--threads", "1"], ranks: ranks)
        XCTAssertEqual(r.status, 0, r.stderr)
        return r.stdout
    }

    /// The first number after `label` in `text`.
    func number(after label: String, in text: String) -> Double? {
        guard let range = text.range(of: label) else { return nil }
        let tail = text[range.upperBound...].drop { !$0.isNumber }
        return Double(tail.prefix { $0.isNumber || $0 == "." })
    }

    /// Invariant: bench train (LoRA and DoRA) and bench prompt run Trainer.step — their profile has the step's
    /// loss, all-reduce and optimizer stages — and report a positive throughput with the kernel that ran.
    func testTrainAndPromptRunTheTrainersStep() throws {
        for args in [["train"], ["train", "--use-dora"], ["prompt"]] {
            let out = try bench(args + ["--profile"])
            let label = args.contains("--use-dora") ? "train (DoRA r=8" : args[0] == "prompt" ? "train (prompt tuning, 20 virtual tokens)" : "train (LoRA r=8"
            XCTAssertTrue(out.contains(label), out)
            XCTAssertGreaterThan(number(after: "tokens:", in: out) ?? 0, 0, out)
            XCTAssertTrue(out.contains("fp32") || out.contains("bf16"), out)
            for stage in ["loss", "all-reduce", "optimizer", "forward", "backward"] {
                XCTAssertTrue(out.split(separator: "\n").contains { $0.hasPrefix(stage) }, "no \(stage) stage in:\n\(out)")
            }
        }
    }

    /// Invariant: bench step on 1 and on 2 ranks reports seconds per step and the all-reduce's time, which is
    /// positive on 2 ranks and a share below 100%.
    func testStepReportsTheAllReduceOnTwoRanks() throws {
        for ranks in [1, 2] {
            let out = try bench(["step"], ranks: ranks)
            XCTAssertTrue(out.contains("step  \(ranks) rank(s)"), out)
            let share = try XCTUnwrap(number(after: "ms (", in: out), out)
            XCTAssertLessThan(share, 100, out)
            if ranks == 2 { XCTAssertGreaterThan(number(after: "all-reduce", in: out) ?? 0, 0, out) }
        }
    }
}
