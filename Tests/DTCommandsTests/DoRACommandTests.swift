// DoRA through the dtrain binary on a tiny model (the data of DistributedTrainingTests): QLoRA + DoRA over a
// base sharded across 2 ranks trains to the single-rank adapter, resumes from its checkpoint (on 1 rank) to
// the same adapter, refuses a resume without use_dora, and the result merges but does not export to GGUF.
import DTFormats
import Foundation
import TestSupport
import XCTest

final class DoRACommandTests: XCTestCase {
    func train(_ extra: [String], ranks: Int = 0, output: String, expectSuccess: Bool = true) throws -> DTrainProcess.Result {
        let args = ["train", "--method", "qlora", "--quant", "nf4", "--use-dora", "true", "--model", DistributedTrainingTests.model,
                    "--data", DistributedTrainingTests.data, "--output", output, "--max-steps", "4", "--batch-size", "8",
                    "--micro-batch-size", "4", "--learning-rate", "0.01", "--lora-rank", "4", "--threads", "1", "--compute", "fp32"] + extra
        let r = try DTrainProcess.run(args, ranks: ranks)
        if expectSuccess { XCTAssertEqual(r.status, 0, "dtrain \(args.joined(separator: " ")) failed:\n\(r.stderr)") }
        return r
    }

    /// Invariant: sharded (2 ranks, each holding half of every NF4 projection, gathered per use — also for the
    /// per-step norm product) and single-rank DoRA give the same adapter (1e-4 after 4 steps); resuming the
    /// 2-rank run's step-2 checkpoint on 1 rank ends at the same adapter; the magnitudes were trained.
    func testShardedDoRAEqualsOneRankAndResumes() throws {
        DistributedTrainingTests.setUp()
        let single = temporaryDirectory(), sharded = temporaryDirectory()
        _ = try train([], output: single)
        let r = try train(["--placement", "sharded", "--save-every", "2", "--keep-checkpoints", "5"], ranks: 2, output: sharded)
        XCTAssertTrue(r.stderr.contains("DoRA r=4") && r.stderr.contains("(sharded, nf4)"), r.stderr)
        let reference = try adapterValues(single + "/final")
        XCTAssertLessThanOrEqual(relativeDifference(reference, try adapterValues(sharded + "/final")), 1e-4, "sharded vs one rank")
        for name in ["checkpoint-000004", "final"] { try FileManager.default.removeItem(atPath: sharded + "/" + name) }
        let resumed = try train(["--resume", "auto"], output: sharded)
        XCTAssertTrue(resumed.stderr.contains("resumed from") && resumed.stderr.contains("at step 2"), resumed.stderr)
        XCTAssertLessThanOrEqual(relativeDifference(reference, try adapterValues(sharded + "/final")), 1e-4, "resumed vs uninterrupted")
        let file = try SafetensorsFile(path: single + "/final/adapter_model.safetensors")
        let m = try file.floats("base_model.model.model.layers.0.self_attn.q_proj.lora_magnitude_vector")
        XCTAssertEqual(m.count, 32)
        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: single + "/final/adapter_config.json"))) as? [String: Any])
        XCTAssertEqual(config["use_dora"] as? Bool, true)
        let plain = try train(["--use-dora", "false", "--resume", "auto", "--max-steps", "4"], output: sharded, expectSuccess: false)
        XCTAssertEqual(plain.status, 1, plain.stderr)
        XCTAssertTrue(plain.stderr.contains("use_dora") && plain.stderr.contains("config.yaml"), plain.stderr)
    }

    /// Invariant: `export --format gguf` refuses a DoRA adapter (status 1, pointing to merge) and writes nothing;
    /// `merge` folds it; DoRA with prompt tuning is refused.
    func testDoRAMergesButDoesNotExportToGGUF() throws {
        DistributedTrainingTests.setUp()
        let run = temporaryDirectory()
        _ = try train(["--max-steps", "1"], output: run)
        let out = temporaryDirectory() + "/adapter.gguf"
        let export = try DTrainProcess.run(["export", "--adapter", run + "/final", "--model", DistributedTrainingTests.model,
                                            "--format", "gguf", "-o", out])
        XCTAssertEqual(export.status, 1, export.stderr)
        XCTAssertTrue(export.stderr.contains("DoRA") && export.stderr.contains("dtrain merge"), export.stderr)
        XCTAssertFalse(FileManager.default.fileExists(atPath: out))
        let merged = temporaryDirectory() + "/merged"
        let merge = try DTrainProcess.run(["merge", "--adapter", run + "/final", "--model", DistributedTrainingTests.model,
                                           "--format", "hf", "--outtype", "f32", "-o", merged])
        XCTAssertEqual(merge.status, 0, merge.stderr)
        XCTAssertTrue(merge.stdout.contains("14 tensors merged"), merge.stdout)
        let prompt = try DTrainProcess.run(["train", "--method", "prompt", "--use-dora", "true", "--model", DistributedTrainingTests.model,
                                            "--data", DistributedTrainingTests.data, "--output", temporaryDirectory(), "--max-steps", "1"])
        XCTAssertEqual(prompt.status, 1, prompt.stderr)
        XCTAssertTrue(prompt.stderr.contains("use_dora: true applies to lora and qlora"), prompt.stderr)
    }
}
