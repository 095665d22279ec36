// dtrain's GGUF adapters and merged models against the real llama.cpp and transformers, through fixtures
// made by scripts/make_llamacpp_fixtures.py (llama.cpp built outside the repo from the llama-cpp-python
// sdist; adapters trained by dtrain on the default model and committed with their numbers).
import Foundation
import TestSupport
import XCTest

final class LlamaCppFixtureTests: XCTestCase {
    var fixtures: String { TestPaths.repoRoot + "/Tests/DTCommandsTests/Fixtures/llamacpp" }

    func expected() throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixtures + "/expected.json"))) as? [String: Any])
    }

    func run(_ args: [String]) throws -> String {
        let r = try DTrainProcess.run(args)
        XCTAssertEqual(r.status, 0, "dtrain \(args.joined(separator: " ")):\n\(r.stderr)")
        return r.stdout
    }

    /// Mean NLL of `dtrain eval` on the fixture text, scored as llama-perplexity scores (from context/2).
    func nll(model: String? = nil, adapter: String? = nil, scoreFrom: Int = 128) throws -> Double {
        try XCTUnwrap(try evaluation(model: model, adapter: adapter, scoreFrom: scoreFrom)["mean_nll"] as? Double)
    }

    func evaluation(model: String? = nil, adapter: String? = nil, scoreFrom: Int = 128) throws -> [String: Any] {
        var args = ["eval", "--data", fixtures + "/eval.txt", "--context", "256", "--score-from", "\(scoreFrom)",
                    "--precision", "fp32", "--compute", "fp32", "--json"]
        if let model { args += ["--model", model] }
        if let adapter { args += ["--adapter", adapter] }
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(try run(args).utf8)) as? [String: Any])
    }

    func requireModel() throws -> Bool {
        if TestPaths.defaultModel != nil { return true }
        if TestPaths.modelRequired { XCTFail("default model missing") }
        return false
    }

    /// Invariant: the change in mean NLL an adapter causes in llama.cpp (exported by dtrain, loaded with
    /// llama-perplexity --lora on the F32 base) equals the change `dtrain eval --adapter` reports, within 2e-3,
    /// for all seven targets, q/v only and rsLoRA; and the exported GGUF adapter gives dtrain the PEFT
    /// directory's NLL.
    func testAdapterEffectEqualsLlamaCpps() throws {
        guard try requireModel() else { return }
        let ref = try expected()
        let baseEval = try evaluation()
        let base = try XCTUnwrap(baseEval["mean_nll"] as? Double)
        let chunks = try XCTUnwrap(((ref["base"] as? [String: Any])?["llama"] as? [String: Any])?["chunks"] as? Int)
        XCTAssertEqual(baseEval["tokens"] as? Int, chunks * 127, "--score-from 128 scores llama-perplexity's 127 predictions per 256-token chunk")
        let adapters = try XCTUnwrap(ref["adapters"] as? [String: [String: Any]])
        XCTAssertEqual(adapters.count, 3)
        for (name, entry) in adapters.sorted(by: { $0.key < $1.key }) {
            let dir = fixtures + "/adapters/" + name
            let delta = try nll(adapter: dir) - base
            let llamaDelta = try XCTUnwrap(entry["llama_delta"] as? Double)
            XCTAssertGreaterThan(abs(llamaDelta), 0.02, "\(name): the adapter must change the NLL")
            XCTAssertEqual(delta, llamaDelta, accuracy: 2e-3, "\(name): dtrain Δ vs llama.cpp Δ")
            let warnings = ((entry["llama"] as? [String: Any])?["warnings"] as? [String]) ?? ["missing"]
            XCTAssertEqual(warnings, [], "\(name): llama.cpp printed warnings when loading the adapter")
            let gguf = temporaryDirectory() + "/\(name).gguf"
            _ = try run(["export", "--adapter", dir, "--format", "gguf", "-o", gguf])
            XCTAssertEqual(try nll(adapter: gguf) - base, delta, accuracy: 1e-6, "\(name): GGUF adapter vs PEFT directory")
        }
    }

    /// Invariant: a merged GGUF means in dtrain what it means in llama.cpp: f32 equals base + adapter, and
    /// q8_0 stays within what Q8_0 costs the base.
    func testMergedGGUFMatchesLlamaCpp() throws {
        guard try requireModel() else { return }
        let ref = try expected()
        let merged = try XCTUnwrap(ref["merged_gguf"] as? [String: [String: Any]])
        let withLora = try XCTUnwrap(((ref["adapters"] as? [String: [String: Any]])?["all7_r4"]?["llama"] as? [String: Any])?["mean_nll"] as? Double)
        let baseNLL = try XCTUnwrap(((ref["base"] as? [String: Any])?["llama"] as? [String: Any])?["mean_nll"] as? Double)
        let q8Base = try XCTUnwrap(merged["q8_0_base"]?["mean_nll"] as? Double)
        let q8BaseWithLora = try XCTUnwrap(merged["q8_0_base_with_lora"]?["mean_nll"] as? Double)
        let f32 = try XCTUnwrap(merged["f32"]?["mean_nll"] as? Double), q8 = try XCTUnwrap(merged["q8_0"]?["mean_nll"] as? Double)
        XCTAssertEqual(f32, withLora, accuracy: 1e-3, "llama.cpp: merged f32 vs base --lora")
        XCTAssertGreaterThan(abs(q8Base - baseNLL), 0, "Q8_0 has a measurable cost on the base")
        XCTAssertLessThanOrEqual(abs(q8 - withLora), abs(q8BaseWithLora - withLora) + 1e-3,
                                 "llama.cpp: merged q8_0 costs no more than Q8_0 costs the base under the same adapter")
        var ours: [String: Double] = [:]
        for outtype in ["f32", "q8_0"] {
            let out = temporaryDirectory() + "/merged-\(outtype).gguf"
            _ = try run(["merge", "--adapter", fixtures + "/adapters/all7_r4", "--format", "gguf", "--outtype", outtype, "-o", out])
            ours[outtype] = try nll(model: out)
        }
        XCTAssertEqual(ours["f32"]!, f32, accuracy: 1e-3, "dtrain vs llama.cpp on the merged f32 GGUF")
        // llama.cpp's Q8_0 kernels also round the activations to 8 bits, dtrain's do not: dtrain's NLL on the
        // q8_0 file measures the weights' rounding alone, which must stay within llama.cpp's whole cost.
        XCTAssertLessThanOrEqual(abs(ours["q8_0"]! - ours["f32"]!), abs(q8 - f32) + 1e-3, "dtrain on the merged q8_0 GGUF")
    }

    /// Invariant: `merge --format hf` of the GGUF base gives the NLL transformers computes on the same
    /// directory and PEFT computes with the adapter on transformers' own load of the GGUF (within 1e-4).
    func testMergedHFMatchesTransformers() throws {
        guard try requireModel() else { return }
        let smollm2 = try XCTUnwrap((try expected()["hf"] as? [String: Any])?["smollm2"] as? [String: Any])
        let out = temporaryDirectory() + "/merged-hf"
        _ = try run(["merge", "--adapter", fixtures + "/adapters/all7_r4", "--format", "hf", "-o", out, "--max-shard-size", "200MB"])
        let got = try nll(model: out, scoreFrom: 0)
        XCTAssertEqual(got, try XCTUnwrap(smollm2["transformers_merged_nll"] as? Double), accuracy: 1e-4, "transformers on the merged directory")
        XCTAssertEqual(got, try XCTUnwrap(smollm2["peft_nll"] as? Double), accuracy: 1e-4, "PEFT with the adapter on the base")
    }
}
