// Runs that must not silently go wrong: a non-finite loss or gradient norm stops the run (or, with
// nan_policy: skip, skips the step) before anything is written; a new run does not replace another run's
// checkpoints and final adapter unless told to; a run that cannot fit in memory is refused before it allocates.
import DTFormats
import Foundation
import TestSupport
import XCTest

final class RunSafetyTests: XCTestCase {
    static var model = "", poisoned = "", data = ""

    override class func setUp() {
        model = TinyModel.writeWithTokenizer(seed: 21)
        data = model + "/train.jsonl"
        try? (0..<16).map { #"{"prompt": "the sun \#($0)", "completion": " and the rain"}"# }.joined(separator: "\n")
            .write(toFile: data, atomically: true, encoding: .utf8)
        // The same model with one NaN weight: a legitimate way for a NaN to reach the loss.
        poisoned = temporaryDirectory()
        for f in ["model.safetensors", "config.json", "tokenizer.json", "tokenizer_config.json"] {
            try? FileManager.default.copyItem(atPath: model + "/" + f, toPath: poisoned + "/" + f)
        }
        let path = poisoned + "/model.safetensors"
        let offset = try! SafetensorsFile(path: path).tensors["model.layers.1.mlp.down_proj.weight"]!.fileOffset
        let handle = FileHandle(forUpdatingAtPath: path)!
        handle.seek(toFileOffset: UInt64(offset + 12))
        handle.write(withUnsafeBytes(of: Float.nan.bitPattern.littleEndian) { Data($0) })
        handle.closeFile()
    }

    func train(_ output: String, model: String = RunSafetyTests.model, _ extra: [String] = []) throws -> DTrainProcess.Result {
        try DTrainProcess.run(["train", "--model", model, "--data", Self.data, "--output", output, "--max-steps", "4", "--batch-size", "4",
                               "--micro-batch-size", "4", "--learning-rate", "0.01", "--lora-rank", "2", "--threads", "1",
                               "--compute", "fp32", "--tensorboard", "false"] + extra)
    }

    func entries(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    /// Invariant: a NaN reaching the loss (a NaN weight) stops the run at that step with status 1, naming the
    /// step, and neither a checkpoint nor final/ is written (nan_policy: stop, the default).
    func testNaNLossStopsBeforeAnythingIsWritten() throws {
        let out = temporaryDirectory()
        let r = try train(out, model: Self.poisoned, ["--save-every", "1"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertFalse(r.signalled)
        XCTAssertTrue(r.stderr.contains("step 1/4: non-finite loss nan") && r.stderr.contains("nan_policy: stop"), r.stderr)
        XCTAssertFalse(entries(out).contains { $0.hasPrefix("checkpoint-") || $0 == "final" }, "\(entries(out))")
        let metrics = (try? String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8)) ?? ""
        XCTAssertFalse(metrics.contains("nan"), metrics)
    }

    /// Invariant: a run that blows up later (a learning rate of 1e30: step 1 is finite, its update makes the
    /// next loss non-finite) stops there; the checkpoint of the last good step stays complete and loadable and
    /// no later one or final/ appears.
    func testBlowUpKeepsTheLastGoodCheckpoint() throws {
        let out = temporaryDirectory()
        let r = try train(out, ["--save-every", "1", "--learning-rate", "1e30", "--max-grad-norm", "0"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertTrue(r.stderr.contains("step 2/4: non-finite") && r.stderr.contains("checkpoint-000001 is the last good checkpoint"), r.stderr)
        XCTAssertEqual(entries(out).filter { $0.hasPrefix("checkpoint-") || $0 == "final" }, ["checkpoint-000001"])
        let values = try SafetensorsFile(path: out + "/checkpoint-000001/adapter_model.safetensors")
        for name in values.tensors.keys { XCTAssertTrue(try values.floats(name).allSatisfy(\.isFinite), name) }
        XCTAssertNoThrow(try SafetensorsFile(path: out + "/checkpoint-000001/optimizer.safetensors").floats("exp_avg"))
    }

    /// Invariant: with nan_policy: skip every non-finite step is skipped — AdamW never runs on it, so the adapter
    /// and the moments stay as they were (here: the initial B = 0 and zero moments) — and the run completes.
    func testSkipPolicyLeavesAdapterAndMomentsUnchanged() throws {
        let out = temporaryDirectory()
        let r = try train(out, model: Self.poisoned, ["--nan-policy", "skip"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(r.stderr.components(separatedBy: "step skipped (nan_policy: skip)").count - 1, 4, r.stderr)
        XCTAssertTrue(r.stderr.contains("4 of 4 steps were skipped"), r.stderr)
        let adapter = try SafetensorsFile(path: out + "/final/adapter_model.safetensors")
        for name in adapter.tensors.keys where name.contains("lora_B") { XCTAssertTrue(try adapter.floats(name).allSatisfy { $0 == 0 }, name) }
        let moments = try SafetensorsFile(path: out + "/checkpoint-000004/optimizer.safetensors")
        XCTAssertTrue(try moments.floats("exp_avg").allSatisfy { $0 == 0 })
        let state = try String(contentsOfFile: out + "/checkpoint-000004/trainer_state.json", encoding: .utf8)
        XCTAssertTrue(state.contains("\"skippedSteps\" : 4") && state.contains("\"optimizerStep\" : 0"), state)
    }

    /// Every file under `dir` with its bytes.
    func snapshot(_ dir: String) -> [String: Data] {
        var out: [String: Data] = [:]
        for case let relative as String in FileManager.default.enumerator(atPath: dir)?.allObjects ?? [] {
            out[relative] = FileManager.default.contents(atPath: dir + "/" + relative) ?? Data()
        }
        return out
    }

    /// Invariant: a new run into a directory holding another run's checkpoints and final/ is refused, naming the
    /// directory and the ways out, and leaves every file there as it was; --resume auto continues it.
    func testRunIntoAnotherRunIsRefusedUnlessResumed() throws {
        let out = temporaryDirectory()
        XCTAssertEqual(try train(out, ["--max-steps", "2"]).status, 0)
        let before = snapshot(out)
        let r = try train(out, ["--max-steps", "2", "--seed", "7"])
        XCTAssertEqual(r.status, 1, r.stderr)
        for f in [out, "holds another run", "checkpoint-000002", "final/", "--resume auto", "--overwrite true"] {
            XCTAssertTrue(r.stderr.contains(f), "lacks \(f): \(r.stderr)")
        }
        XCTAssertEqual(snapshot(out), before, "a refused run must write nothing")
        let resumed = try train(out, ["--max-steps", "2", "--resume", "auto"])
        XCTAssertEqual(resumed.status, 0, resumed.stderr)
        XCTAssertTrue(resumed.stderr.contains("resumed from"), resumed.stderr)
    }

    /// Invariant: --overwrite true replaces the previous run: its checkpoints, final/ and metrics are gone before
    /// the new run writes its own (so --resume auto can never pick up the old run's newer checkpoint).
    func testOverwriteReplacesThePreviousRun() throws {
        let out = temporaryDirectory()
        XCTAssertEqual(try train(out, ["--max-steps", "4"]).status, 0)
        XCTAssertTrue(entries(out).contains("checkpoint-000004"))
        let r = try train(out, ["--max-steps", "2", "--overwrite", "true"])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertEqual(entries(out).filter { $0.hasPrefix("checkpoint-") }, ["checkpoint-000002"])
        let metrics = try String(contentsOfFile: out + "/metrics.jsonl", encoding: .utf8).split(separator: "\n")
        XCTAssertEqual(metrics.count, 2, "only the new run's steps")
    }

    /// Invariant: a workspace that cannot fit (16384 × 4096-token rows: hundreds of GB even recomputing every layer) is
    /// refused before it is allocated, with the estimate and the keys that reduce it, and nothing is written.
    func testRunThatCannotFitIsRefusedWithTheEstimate() throws {
        let dir = TinyModel.writeWithTokenizer(seed: 3)
        let config = try String(contentsOfFile: dir + "/config.json", encoding: .utf8)
        try config.replacingOccurrences(of: "\"max_position_embeddings\": 64", with: "\"max_position_embeddings\": 8192")
            .write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        try String(repeating: "the sun and the rain ", count: 400).write(toFile: dir + "/long.txt", atomically: true, encoding: .utf8)
        let out = temporaryDirectory()
        let r = try DTrainProcess.run(["train", "--model", dir, "--data", dir + "/long.txt", "--output", out, "--max-length", "4096",
                                       "--micro-batch-size", "16384", "--batch-size", "16384", "--threads", "1", "--compute", "fp32"])
        XCTAssertEqual(r.status, 1, r.stderr)
        XCTAssertFalse(r.signalled)
        // recompute: auto (the default) has already turned recomputation on, so it is not among the advice
        for f in ["recompute: auto → true: keeping every layer's activations for 16384 × 4096 tokens would take about",
                  "memory: the training workspace (16384 × 4096 tokens) needs about", "GiB per rank", "is available", "micro_batch_size (now 16384)",
                  "method: qlora", "placement: sharded"] {
            XCTAssertTrue(r.stderr.contains(f), "lacks \(f): \(r.stderr)")
        }
        XCTAssertFalse(r.stderr.contains("recompute: true,"), r.stderr)
        let kept = try DTrainProcess.run(["train", "--model", dir, "--data", dir + "/long.txt", "--output", out, "--max-length", "4096",
                                          "--micro-batch-size", "16384", "--batch-size", "16384", "--threads", "1", "--compute", "fp32",
                                          "--recompute", "false"])
        XCTAssertEqual(kept.status, 1, kept.stderr)
        XCTAssertTrue(kept.stderr.contains("recompute: true, method: qlora"), "advice names recompute when it is off: \(kept.stderr)")
        XCTAssertFalse(kept.stderr.contains("recompute: auto"), kept.stderr)
        XCTAssertEqual(entries(out), [], "a refused run writes nothing")
        let small = try DTrainProcess.run(["train", "--model", dir, "--data", dir + "/long.txt", "--output", out, "--max-length", "256",
                                           "--max-steps", "1", "--batch-size", "2", "--micro-batch-size", "2", "--threads", "1", "--compute", "fp32"])
        XCTAssertEqual(small.status, 0, small.stderr)
        XCTAssertTrue(small.stderr.contains("; available "), small.stderr)
        XCTAssertTrue(small.stderr.contains("recompute: auto → false: every layer's activations for 2 × "), small.stderr)
    }
}
