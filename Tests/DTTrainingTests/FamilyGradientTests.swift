// Whole-model finite-difference gradient checks with LoRA on every projection, for each architecture
// family's fixture (Tests/DTModelTests/Fixtures/families, made by scripts/make_family_fixtures.py), on
// sequences longer than the family's sliding window — padded rows and packed rows.
import DTKernels
import DTModel
import DTTraining
import Foundation
import TestSupport
import XCTest

final class FamilyGradientTests: XCTestCase {
    func familySetup(_ name: String, recompute: Bool, packed: Bool) throws -> GradientCheck {
        let path = TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/families/\(name)/model"
        let model = try LlamaModel(source: ModelSource(path: path))
        var options = LoRAOptions(); options.rank = 2; options.alpha = 4
        let ws = ForwardWorkspace(model: model, batch: 2, length: 12, mode: .training(recompute: recompute))
        let adapter = LoRAAdapter(model: model, options: options, seed: 3)
        var rng = SeededRandom(seed: 9)
        for e in adapter.arena.entries where e.name.contains("lora_B") {
            adapter.arena.set(e.name, (0..<e.count).map { _ in 0.3 * rng.normal() })
        }
        let a: [Int32] = [1, 5, 9, 13, 2, 7, 11, 4, 8, 3, 6, 10], b: [Int32] = [3, 8, 4, 12, 1, 9, 2, 5, 7]
        var labels = [Int32](repeating: -100, count: 24)
        if packed {
            // Rows of 12: [a(0..<7) | b(0..<5)], [a(7..<12) + padding]: windows and segments both apply.
            let seqs = [Array(a.prefix(7)), Array(b.prefix(5)), Array(a.suffix(5))]
            let placed = ws.loadPacked(seqs, length: 12)
            for (seq, at) in zip(seqs, placed) { for t in 0..<(seq.count - 1) { labels[at.row * 12 + at.column + t] = seq[t + 1] } }
        } else {
            ws.load([a, b])
            for t in 0..<11 { labels[t] = a[t + 1] }
            for t in 0..<8 { labels[12 + t] = b[t + 1] }
        }
        return GradientCheck(model: model, adapter: adapter, ws: ws, labels: labels)
    }

    /// Invariant: mistral with sliding_window 5 on 12-token rows: LoRA gradients through the windowed
    /// attention match finite differences, padded and packed, with and without recomputation.
    func testMistralSlidingWindowGradientsMatchFiniteDifferences() throws {
        XCTAssertEqual(try familySetup("mistral_sliding", recompute: false, packed: false).model.config.architecture.slidingWindow, 5)
        try familySetup("mistral_sliding", recompute: false, packed: false).check()
        try familySetup("mistral_sliding", recompute: true, packed: true).check()
    }

    /// Invariant: Gemma 3: LoRA gradients through the sandwich norms, GeGLU, scaled embeddings, QK-norm and
    /// windowed layers with their own RoPE base match finite differences. The padded rows' loss (27 nats, fp32)
    /// moves the central difference by up to ~1e-4 as its step goes 3e-3 … 3e-2 (a direction with derivative
    /// −0.0081 gives −0.00804 … −0.00813), so the directional checks there allow that much on top of 1e-3.
    func testGemma3GradientsMatchFiniteDifferences() throws {
        try familySetup("gemma3", recompute: false, packed: false).check(rounding: 1e-4)
        try familySetup("gemma3", recompute: true, packed: true).check()
    }

    /// Invariant: Gemma 2: LoRA gradients through attention soft-capping (the backward's recomputed capped
    /// scores) and final-logit soft-capping (carried back by the cross-entropy) match finite differences.
    func testGemma2GradientsMatchFiniteDifferences() throws {
        try familySetup("gemma2", recompute: false, packed: false).check(rounding: 1e-4)
        try familySetup("gemma2", recompute: true, packed: true).check()
    }

    /// Invariant: Phi-3: LoRA on the fused modules (one A shared by q, k and v, and by gate and up; B stacked) has
    /// gradients that match finite differences — the shared A's gradient is the sum over its parts — padded and
    /// packed, with and without recomputation, through the window; and the arena holds PEFT's modules. The losses
    /// are 15–20 nats in fp32, so a central difference carries ~1e-4 of rounding: along one packed direction it moves
    /// 0.02708 … 0.02727 as the step goes 5e-3 … 2.5e-2 (analytic 0.02732), hence the 1e-4 rounding allowance.
    func testPhi3FusedModuleGradientsMatchFiniteDifferences() throws {
        let s = try familySetup("phi3", recompute: false, packed: false)
        XCTAssertEqual(s.adapter.arena.entries.map(\.name).filter { $0.contains("layers.0.") }.sorted(), [
            "base_model.model.model.layers.0.mlp.down_proj.lora_A.weight", "base_model.model.model.layers.0.mlp.down_proj.lora_B.weight",
            "base_model.model.model.layers.0.mlp.gate_up_proj.lora_A.weight", "base_model.model.model.layers.0.mlp.gate_up_proj.lora_B.weight",
            "base_model.model.model.layers.0.self_attn.o_proj.lora_A.weight", "base_model.model.model.layers.0.self_attn.o_proj.lora_B.weight",
            "base_model.model.model.layers.0.self_attn.qkv_proj.lora_A.weight", "base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight"])
        XCTAssertEqual(s.adapter.arena.entry("base_model.model.model.layers.0.self_attn.qkv_proj.lora_B.weight")?.shape, [64 + 32 + 32, 2])
        s.check(rounding: 1e-4)
        try familySetup("phi3", recompute: true, packed: true).check(rounding: 1e-4)
        // LongRoPE scales cos and sin by its attention factor (1.22 here), so the rotation's backward is scaled too.
        let longRope = try familySetup("phi3_longrope", recompute: true, packed: false)
        XCTAssertEqual(longRope.model.config.longRope?.attentionFactor ?? 1, 1.2247, accuracy: 1e-4)
        longRope.check(rounding: 1e-4)
    }

    /// Invariant: on Phi-3, targets that split a fused module (q without k and v, or gate without up) are refused
    /// naming the module, since PEFT adapts it as one; whole modules, or none of one, are accepted; on Llama any
    /// subset is.
    func testTargetsThatSplitAFusedModuleAreRefused() throws {
        let phi3 = try ModelSource(path: TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/families/phi3/model").config
        let mistral = try ModelSource(path: TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/families/mistral_sliding/model").config
        var o = LoRAOptions()
        for (targets, module) in [([TensorNames.Projection.q, .v], "qkv_proj"), ([.q, .k, .v, .up], "gate_up_proj")] {
            o.targets = targets
            XCTAssertThrowsError(try o.checkTargets(phi3)) { XCTAssertTrue("\($0)".contains(module) && "\($0)".contains("lora_targets"), "\($0)") }
            XCTAssertNoThrow(try o.checkTargets(mistral))
        }
        for targets in [[TensorNames.Projection.q, .k, .v], [.o, .down], [.gate, .up, .o], TensorNames.Projection.allCases] {
            o.targets = targets
            XCTAssertNoThrow(try o.checkTargets(phi3))
        }
    }

    /// Invariant: qwen3: LoRA gradients through the per-head q/k RMSNorm match finite differences.
    func testQwen3GradientsMatchFiniteDifferences() throws {
        try familySetup("qwen3", recompute: false, packed: false).check()
        try familySetup("qwen3", recompute: true, packed: true).check()
    }
}
