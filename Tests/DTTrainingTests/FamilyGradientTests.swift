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
        let adapter = LoRAAdapter(model: model, options: options, maxRows: ws.rows, seed: 3)
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

    /// Invariant: qwen3: LoRA gradients through the per-head q/k RMSNorm match finite differences.
    func testQwen3GradientsMatchFiniteDifferences() throws {
        try familySetup("qwen3", recompute: false, packed: false).check()
        try familySetup("qwen3", recompute: true, packed: true).check()
    }
}
