// PEFT interop per architecture family (fixtures and generator: scripts/make_family_interop_fixtures.py, over the
// family checkpoints of scripts/make_family_fixtures.py): PEFT's adapter means the same in dtrain, and dtrain's
// written adapter means the same in PEFT.
import DTModel
import DTTraining
import Foundation
import TestSupport
import XCTest

final class FamilyInteropTests: XCTestCase {
    /// Invariant: for mistral (window 5 on 24 tokens), qwen3, gemma2, gemma3_text and phi3 (PEFT's fused modules
    /// qkv_proj and gate_up_proj), a LoRA adapter made by PEFT on transformers' model (all seven projections) gives PEFT's mean NLL in dtrain, and the same adapter written by
    /// dtrain (exported to a llama.cpp GGUF adapter and back to PEFT) loads in PEFT with no missing or unexpected LoRA
    /// key and gives there the NLL dtrain computes with it — all within 1e-4, with the adapter moving the NLL by > 1e-2.
    func testAdaptersMeanTheSameInPEFTAndDtrainForEveryFamily() throws {
        for name in ["mistral_sliding", "qwen3", "gemma2", "gemma3", "phi3"] {
            let dir = TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/families/\(name)"
            let model = try LlamaModel(source: ModelSource(path: dir + "/model"))
            let ref = try InteropFixtures.json(dir + "/interop_expected.json")
            let ids = try XCTUnwrap(ref["ids"] as? [NSNumber]).map { Int32($0.intValue) }
            func expected(_ key: String) throws -> Double { try XCTUnwrap(ref[key] as? NSNumber, "\(name): \(key)").doubleValue }
            func nll(_ adapter: ModelAdapter?) -> Double { InteropFixtures.meanNLL(model, [ids], adapter: adapter) }

            XCTAssertEqual(nll(nil), try expected("base_mean_nll"), accuracy: 1e-4, "\(name): base model")
            let peft = try AdapterLoader.load(dir + "/peft_lora", model: model)
            XCTAssertEqual(nll(peft), try expected("peft_lora_mean_nll"), accuracy: 1e-4, "\(name): PEFT's adapter in dtrain")
            XCTAssertGreaterThan(abs(try expected("peft_lora_mean_nll") - expected("base_mean_nll")), 1e-2, "\(name): the adapter must matter")
            let mine = try AdapterLoader.load(dir + "/dtrain_lora", model: model)
            XCTAssertEqual(try expected("dtrain_lora_mean_nll_in_peft"), nll(mine), accuracy: 1e-4, "\(name): dtrain's adapter in PEFT")
            let report = try XCTUnwrap(ref["dtrain_lora_load_report"] as? [String: [String]])
            XCTAssertEqual(report["missing_keys"], [], name)
            XCTAssertEqual(report["unexpected_keys"], [], name)
        }
    }
}
