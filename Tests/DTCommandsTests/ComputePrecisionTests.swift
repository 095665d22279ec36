// `compute: auto | bf16 | fp32` through the binary on the default model: bf16 stays within its precision of
// the fp32 reference, and a CPU without bf16 instructions (hidden with DTRAIN_HIDE_CPU_FEATURES) runs the
// fp32 path with fp32's results and refuses an explicit bf16 clearly.
import DTKernels
import Foundation
import TestSupport
import XCTest

final class ComputePrecisionTests: XCTestCase {
    var root: String { TestPaths.repoRoot }
    static let noBF16 = ["DTRAIN_HIDE_CPU_FEATURES": "avx512_bf16,amx_bf16"]

    func requireModel() -> Bool {
        if TestPaths.defaultModel != nil { return true }
        if TestPaths.modelRequired { XCTFail("default model missing") }
        return false
    }

    func meanNLL(_ compute: String, environment: [String: String] = [:]) throws -> (nll: Double, log: String) {
        let r = try DTrainProcess.run(["eval", "--data", root + "/data/topics/valid.jsonl", "--context", "128", "--json",
                                       "--compute", compute], environment: environment)
        XCTAssertEqual(r.status, 0, r.stderr)
        let obj = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(r.stdout.utf8)) as? [String: Any], r.stdout + r.stderr)
        return (try XCTUnwrap(obj["mean_nll"] as? Double), r.stderr)
    }

    /// Invariant: the default model's mean NLL with bf16 products is within 0.02 of the fp32 reference's.
    func testBF16EvalNLLWithinTwoHundredthsOfFP32() throws {
        guard requireModel() else { return }
        guard CPUFeatures.hasBF16Products else { throw XCTSkip("this CPU has neither AVX512_BF16 nor AMX") }
        let fp32 = try meanNLL("fp32"), bf16 = try meanNLL("bf16")
        XCTAssertTrue(fp32.log.contains("fp32 products (OpenBLAS"), fp32.log)
        XCTAssertTrue(bf16.log.contains("bf16 products, fp32 accumulation (oneDNN"), bf16.log)
        XCTAssertNotEqual(bf16.nll, fp32.nll, "the bf16 path ran")
        XCTAssertEqual(bf16.nll, fp32.nll, accuracy: 0.02)
    }

    /// Invariant: on a CPU without AVX512_BF16/AMX, `auto` runs the fp32 path with exactly fp32's result and
    /// says so; `compute: bf16` is a clear error (exit 1), not a crash.
    func testWithoutBF16InstructionsAutoIsFP32AndBF16IsRefused() throws {
        guard requireModel() else { return }
        let auto = try meanNLL("auto", environment: Self.noBF16), fp32 = try meanNLL("fp32")
        XCTAssertEqual(auto.nll, fp32.nll, "auto falls back to the fp32 path")
        XCTAssertTrue(auto.log.contains("fp32 products (OpenBLAS"), auto.log)
        let refused = try DTrainProcess.run(["eval", "--data", root + "/data/topics/valid.jsonl", "--compute", "bf16"],
                                            environment: Self.noBF16)
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("compute: bf16 needs a CPU with AVX512_BF16 or AMX-BF16"), refused.stderr)
        let train = try DTrainProcess.run(["train", "--data", root + "/data/instruct/valid.jsonl", "--output", temporaryDirectory(),
                                           "--compute", "bf16", "--max-steps", "1"], environment: Self.noBF16)
        XCTAssertEqual(train.status, 1, train.stderr)
        XCTAssertTrue(train.stderr.contains("AVX512_BF16 or AMX-BF16"), train.stderr)
    }

    /// Invariant: a short LoRA fine-tune of the main job with bf16 products ends within 3% of the fp32
    /// run's validation loss (same data, order, initialisation and steps).
    func testBF16FineTuneEndsWithinThreePercentOfFP32() throws {
        guard requireModel() else { return }
        guard CPUFeatures.hasBF16Products else { throw XCTSkip("this CPU has neither AVX512_BF16 nor AMX") }
        func finalLoss(_ compute: String) throws -> Double {
            let r = try DTrainProcess.run(["train", "--config", root + "/launch/configs/instruct-lora.yaml", "--data", root + "/data/instruct/train.jsonl",
                                           "--valid-data", root + "/data/instruct/valid.jsonl", "--output", temporaryDirectory(),
                                           "--max-steps", "10", "--eval-every", "0", "--save-every", "0", "--max-length", "128",
                                           "--compute", compute])
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stderr.contains("compute: \(compute) products"), r.stderr)
            let line = try XCTUnwrap(r.stderr.split(separator: "\n").last { $0.contains("% lower)") }, r.stderr)
            let after = line.split(separator: "→").last!.split(separator: "(").first!.trimmingCharacters(in: .whitespaces)
            return try XCTUnwrap(Double(after), String(line))
        }
        let fp32 = try finalLoss("fp32"), bf16 = try finalLoss("bf16")
        XCTAssertEqual(bf16, fp32, accuracy: 0.03 * fp32)
        XCTAssertLessThan(bf16, 2.2, "the bf16 run learned (base ≈ 2.6)")
    }
}
