// End-to-end training through the dtrain binary on a tiny model: data-parallel ranks give the same result
// as one process with more accumulation, and resuming (also on another number of ranks) gives the same
// adapter as an uninterrupted run. Uses mpirun with 2 ranks.
import DTFormats
import DTKernels
import Foundation
import TestSupport
import XCTest

func relativeDifference(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var diff: Float = 0, norm: Float = 0
    for (x, y) in zip(a, b) { diff += (x - y) * (x - y); norm += x * x }
    return (diff / max(norm, 1e-30)).squareRoot()
}

/// All adapter tensors of a PEFT directory, concatenated in name order.
func adapterValues(_ dir: String) throws -> [Float] {
    let f = try SafetensorsFile(path: dir + "/adapter_model.safetensors")
    return try f.tensors.keys.sorted().flatMap { try f.floats($0) }
}

final class DistributedTrainingTests: XCTestCase {
    static var model = ""
    static var data = ""

    override class func setUp() {
        var shape = TinyModel.Shape()
        let dir = temporaryDirectory()
        shape.vocab = TinyTokenizer.write(into: dir)
        let modelDir = TinyModel.write(shape, seed: 4)
        for f in ["model.safetensors", "config.json"] { try? FileManager.default.copyItem(atPath: modelDir + "/" + f, toPath: dir + "/" + f) }
        model = dir
        var lines: [String] = []
        let words = ["the cat", "a dog", "then it", "in the sun", "and the rain", "an ant"]
        for i in 0..<24 {
            let q = words[i % words.count], a = words[(i * 5 + 1) % words.count]
            lines.append(#"{"messages": [{"role": "user", "content": "\#(q) \#(i)"}, {"role": "assistant", "content": "\#(a) \#(i % 7)"}]}"#)
        }
        data = dir + "/train.jsonl"
        try? lines.joined(separator: "\n").write(toFile: data, atomically: true, encoding: .utf8)
    }

    func train(_ extra: [String], ranks: Int = 0, output: String, env: [String: String] = [:]) throws -> DTrainProcess.Result {
        let args = ["train", "--model", Self.model, "--data", Self.data, "--output", output, "--max-steps", "5",
                    "--batch-size", "8", "--learning-rate", "0.01", "--lora-rank", "4", "--warmup-steps", "1", "--log-every", "1",
                    "--threads", "1", "--compute", "fp32"] + extra   // world-size invariance is checked on the exact path
        let r = try DTrainProcess.run(args, ranks: ranks, environment: env)
        XCTAssertEqual(r.status, 0, "dtrain \(args.joined(separator: " ")) failed:\n\(r.stderr)")
        return r
    }

    /// Invariant: 2 ranks × 1 micro-batch and 1 rank × 2 micro-batches give the same reduced gradient
    /// (1e-5) at step 1 and the same adapter after 5 steps (1e-4).
    func testTwoRanksEqualOneRankWithDoubleAccumulation() throws {
        let one = temporaryDirectory(), two = temporaryDirectory()
        let g1 = temporaryDirectory(), g2 = temporaryDirectory()
        _ = try train(["--micro-batch-size", "4"], output: one, env: ["DTRAIN_DUMP_GRADIENTS": g1])
        _ = try train(["--micro-batch-size", "4"], ranks: 2, output: two, env: ["DTRAIN_DUMP_GRADIENTS": g2])
        let a = try SafetensorsFile(path: g1 + "/gradient-step-0.safetensors").floats("gradient")
        let b = try SafetensorsFile(path: g2 + "/gradient-step-0.safetensors").floats("gradient")
        XCTAssertLessThanOrEqual(relativeDifference(a, b), 1e-5, "first-step reduced gradient")
        XCTAssertGreaterThan(a.map(abs).max()!, 0)
        let d = relativeDifference(try adapterValues(one + "/final"), try adapterValues(two + "/final"))
        XCTAssertLessThanOrEqual(d, 1e-4, "adapters after 5 steps")
    }

    /// Invariant: `packing: true` (several examples per row, 2 ranks) trains to the unpacked run's adapter
    /// (1e-4 after 5 steps, fp32), with a first-step gradient equal to 1e-5; packing with prompt tuning is refused.
    func testPackedRunEqualsUnpackedRun() throws {
        let plain = temporaryDirectory(), packed = temporaryDirectory()
        let g1 = temporaryDirectory(), g2 = temporaryDirectory()
        _ = try train(["--micro-batch-size", "4", "--max-length", "64"], output: plain, env: ["DTRAIN_DUMP_GRADIENTS": g1])
        _ = try train(["--micro-batch-size", "4", "--max-length", "64", "--packing", "true"], ranks: 2, output: packed,
                      env: ["DTRAIN_DUMP_GRADIENTS": g2])
        let a = try SafetensorsFile(path: g1 + "/gradient-step-0.safetensors").floats("gradient")
        let b = try SafetensorsFile(path: g2 + "/gradient-step-0.safetensors").floats("gradient")
        XCTAssertLessThanOrEqual(relativeDifference(a, b), 1e-5, "first-step reduced gradient")
        XCTAssertLessThanOrEqual(relativeDifference(try adapterValues(plain + "/final"), try adapterValues(packed + "/final")), 1e-4)
        let refused = try DTrainProcess.run(["train", "--method", "prompt", "--packing", "true", "--model", Self.model, "--data", Self.data,
                                             "--output", temporaryDirectory(), "--max-steps", "1", "--compute", "fp32"])
        XCTAssertEqual(refused.status, 1, refused.stderr)
        XCTAssertTrue(refused.stderr.contains("packing: true applies to lora and qlora"), refused.stderr)
    }

    /// Invariant: stopping after a checkpoint and resuming (on 1 rank, from a 2-rank run) ends with the
    /// adapter of an uninterrupted run.
    func testResumeFromTwoRanksOntoOneMatchesUninterrupted() throws {
        let full = temporaryDirectory(), cut = temporaryDirectory()
        _ = try train([], output: full)
        _ = try train(["--save-every", "2", "--keep-checkpoints", "5"], ranks: 2, output: cut)
        // Simulate the job dying after step 4: drop everything written later.
        for name in ["checkpoint-000005", "final"] { try FileManager.default.removeItem(atPath: cut + "/" + name) }
        XCTAssertTrue(FileManager.default.fileExists(atPath: cut + "/checkpoint-000004/trainer_state.json"))
        let resumed = try train(["--resume", "auto"], output: cut)
        XCTAssertTrue(resumed.stderr.contains("resumed from") && resumed.stderr.contains("at step 4"), resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("step 5/5"))
        XCTAssertFalse(resumed.stderr.contains("step 4/5"), "steps before the checkpoint must not run again")
        let d = relativeDifference(try adapterValues(full + "/final"), try adapterValues(cut + "/final"))
        XCTAssertLessThanOrEqual(d, 1e-4)
    }

    /// Invariant: a resume whose configuration changes the math is refused, naming the key.
    func testResumeWithDifferentConfigIsRefused() throws {
        let out = temporaryDirectory()
        _ = try train(["--save-every", "2"], output: out)
        let r = try DTrainProcess.run(["train", "--model", Self.model, "--data", Self.data, "--output", out, "--max-steps", "5",
                                       "--batch-size", "8", "--learning-rate", "0.01", "--lora-rank", "8", "--warmup-steps", "1",
                                       "--resume", "auto"])
        XCTAssertNotEqual(r.status, 0)
        XCTAssertTrue(r.stderr.contains("lora_rank") && r.stderr.contains("config.yaml"), r.stderr)
    }

    /// Invariant: the run directory has what a user expects: resolved config, metrics, checkpoints, final PEFT files.
    func testRunDirectoryLayout() throws {
        let out = temporaryDirectory()
        let r = try train(["--save-every", "2", "--keep-checkpoints", "1", "--valid-split", "0.25"], output: out)
        let fm = FileManager.default
        for f in ["config.yaml", "metrics.jsonl", "final/adapter_config.json", "final/adapter_model.safetensors",
                  "checkpoint-000005/optimizer.safetensors", "checkpoint-000005/trainer_state.json", "checkpoint-000005/config.yaml"] {
            XCTAssertTrue(fm.fileExists(atPath: out + "/" + f), f)
        }
        XCTAssertFalse(fm.fileExists(atPath: out + "/checkpoint-000004"), "only the newest checkpoint is kept")
        let metrics = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(metrics.count, 5)
        XCTAssertTrue(metrics.last!.contains("eval_loss"))
        XCTAssertTrue(r.stderr.contains("validation loss before training"))
        // TensorBoard: one event file, valid records, the four training scalars of each of the 5 steps and the
        // validation loss before training and at the end.
        let events = try fm.contentsOfDirectory(atPath: out).filter { $0.hasPrefix("events.out.tfevents.") }
        XCTAssertEqual(events.count, 1)
        let tags = try tensorBoardRecords(out + "/" + events[0]).flatMap(scalarTags)
        XCTAssertEqual(tags.filter { $0 == "train/loss" }.count, 5)
        XCTAssertEqual(tags.filter { $0 == "train/learning_rate" }.count, 5)
        XCTAssertEqual(tags.filter { $0 == "valid/loss" }.count, 2)
        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/final/adapter_config.json"))) as? [String: Any])
        XCTAssertEqual(config["peft_type"] as? String, "LORA")
        XCTAssertEqual(config["r"] as? Int, 4)
        XCTAssertEqual((config["target_modules"] as? [String])?.count, 7)
    }
}

final class QLoRAPlacementTests: XCTestCase {
    /// Invariant: QLoRA (NF4 base) on 2 sharded ranks, 2 replicated ranks and 1 rank gives the same adapter,
    /// and a sharded rank holds half the base (projections and embedding) of a replicated one.
    func testShardedReplicatedAndSingleRankAgree() throws {
        try checkPlacementsAgree(compute: "fp32", tolerance: 1e-4)
    }

    /// Invariant: the same with bf16 products — the sharded base gathered and dequantized per use straight to
    /// bf16 — within bf16's run-to-run spread across world sizes (2e-3 after 4 steps).
    func testShardedReplicatedAndSingleRankAgreeInBF16() throws {
        guard CPUFeatures.hasBF16Products else { throw XCTSkip("no bf16 instructions") }
        try checkPlacementsAgree(compute: "bf16", tolerance: 2e-3)
    }

    func checkPlacementsAgree(compute: String, tolerance: Float) throws {
        DistributedTrainingTests.setUp()
        var baseBytes: [String: Double] = [:]
        func run(_ ranks: Int, _ placement: String) throws -> [Float] {
            let out = temporaryDirectory()
            let r = try DTrainProcess.run(["train", "--method", "qlora", "--quant", "nf4", "--placement", placement,
                                           "--model", DistributedTrainingTests.model, "--data", DistributedTrainingTests.data,
                                           "--output", out, "--max-steps", "4", "--batch-size", "8", "--micro-batch-size", "4",
                                           "--learning-rate", "0.01", "--lora-rank", "4", "--threads", "1", "--compute", compute], ranks: ranks)
            XCTAssertEqual(r.status, 0, r.stderr)
            XCTAssertTrue(r.stderr.contains("compute: \(compute) products"), r.stderr)
            if ranks > 1 { XCTAssertTrue(r.stderr.contains("(\(placement), nf4)"), r.stderr) }
            if let range = r.stderr.range(of: #"memory per rank: base [0-9.]+ [KM]iB"#, options: .regularExpression) {
                let words = r.stderr[range].split(separator: " ")
                baseBytes[placement] = Double(words[4])! * (words[5] == "MiB" ? 1_048_576 : 1024)
            }
            return try adapterValues(out + "/final")
        }
        let single = try run(0, "auto"), sharded = try run(2, "sharded"), replicated = try run(2, "replicated")
        XCTAssertLessThanOrEqual(relativeDifference(single, sharded), tolerance)
        XCTAssertLessThanOrEqual(relativeDifference(single, replicated), tolerance)
        XCTAssertGreaterThan(single.map(abs).max()!, 0)
        let half = try XCTUnwrap(baseBytes["sharded"]) / XCTUnwrap(baseBytes["replicated"])
        XCTAssertEqual(half, 0.5, accuracy: 0.03, "sharded base per rank / replicated base")
    }
}
