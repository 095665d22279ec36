// Whole-model gradient check with LoRA on every projection of a tiny random Llama: the analytic gradient
// of the mean token loss w.r.t. all adapter tensors against central finite differences (GradientCheck.swift).
import DTKernels
import DTModel
import DTTraining
import Foundation
import TestSupport
import XCTest

final class LoRAGradientTests: XCTestCase {
    func testLoRAGradientsMatchFiniteDifferences() throws { try GradientCheck.make(recompute: false).check() }

    /// Invariant: recomputing activations in backward gives the same gradients as keeping them.
    func testRecomputeGivesTheSameGradients() throws {
        let kept = try GradientCheck.make(recompute: false).analyticGradient()
        let recomputed = try GradientCheck.make(recompute: true).analyticGradient()
        XCTAssertEqual(kept.count, recomputed.count)
        for (a, b) in zip(kept, recomputed) { XCTAssertEqual(a, b, accuracy: 1e-6 + 1e-5 * abs(a)) }
    }

    /// Invariant: the QLoRA path — weights dequantized per use, the embedding / LM head in row chunks (here
    /// several, the last one partial) — gives the fp32 path's loss and gradients.
    func testChunkedQuantizedPathGivesTheSameGradients() throws {
        let quantized = try GradientCheck.make(recompute: false, precision: .asStored)
        XCTAssertGreaterThan(quantized.model.embedding.rows % quantized.model.embedding.chunkRows, 0, "want a partial last chunk")
        XCTAssertLessThan(quantized.model.embedding.chunkRows, quantized.model.embedding.rows, "want several chunks")
        let dense = try GradientCheck.make(recompute: false)
        XCTAssertEqual(quantized.loss(), dense.loss(), accuracy: 1e-6)
        let a = quantized.analyticGradient(), b = dense.analyticGradient()
        var diff: Float = 0, norm: Float = 0
        for (x, y) in zip(a, b) { diff += (x - y) * (x - y); norm += y * y }
        XCTAssertLessThan((diff / norm).squareRoot(), 1e-5)
    }

    func testGradientsWithDropoutAndQKVBiasMatchFiniteDifferences() throws {
        let s = try GradientCheck.make(recompute: true, dropout: 0.2, bias: true)
        s.adapter.training = true
        s.adapter.rowKeys = (0..<12).map { UInt64($0) * 977 }
        s.check()
    }

    /// Invariant: with B = 0 (PEFT init) the adapted model equals the base model exactly.
    func testFreshAdapterLeavesTheModelUnchanged() throws {
        let s = try GradientCheck.make(recompute: false)
        s.model.forward(s.ws)
        let base = s.ws.logits.array
        let fresh = LoRAAdapter(model: s.model, options: s.adapter.options, seed: 5)
        s.model.forward(s.ws, adapter: fresh)
        XCTAssertEqual(base, s.ws.logits.array)
        XCTAssertGreaterThan(fresh.arena.array(LoRAAdapter.tensorName(0, .q, "A")).map(abs).max()!, 0)
    }

    /// Invariant: the bf16 products (weights rounded at load, activations rounded at each product's input,
    /// fp32 accumulation) give the fp32 path's loss within bf16's precision and gradients pointing the same
    /// way (cosine ≥ 0.999), with and without recomputation.
    func testBF16PathGradientsMatchFP32() throws {
        for recompute in [false, true] {
            let reference = try GradientCheck.make(recompute: recompute)
            let bf16 = try GradientCheck.make(recompute: recompute, compute: .bf16)
            XCTAssertEqual(bf16.model.layers[0].projections[.q]!.storedBytes, 2 * 32 * 32, "q held in bf16")
            let (l32, l16) = (reference.loss(), bf16.loss())
            XCTAssertNotEqual(l32, l16, "the bf16 path really rounds")
            XCTAssertEqual(l16, l32, accuracy: 1e-2 * abs(l32))
            let a = bf16.analyticGradient(), b = reference.analyticGradient()
            var dot: Double = 0, na: Double = 0, nb: Double = 0
            for (x, y) in zip(a, b) { dot += Double(x) * Double(y); na += Double(x * x); nb += Double(y * y) }
            XCTAssertGreaterThanOrEqual(dot / (na * nb).squareRoot(), 0.999, "cosine of bf16 and fp32 gradients, recompute \(recompute)")
        }
    }

    /// Invariant: a quantized base dequantized per use into bf16 scratch gives exactly what rounding the same
    /// dequantized weights to bf16 once at load gives (the per-use path adds no error of its own).
    func testPerUseBF16DequantizationEqualsRoundingAtLoad() throws {
        let perUse = try GradientCheck.make(recompute: false, precision: .asStored, compute: .bf16)
        let atLoad = try GradientCheck.make(recompute: false, compute: .bf16)
        XCTAssertEqual(perUse.loss(), atLoad.loss(), accuracy: 1e-6 * abs(atLoad.loss()))
        let a = perUse.analyticGradient(), b = atLoad.analyticGradient()
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-6 + 1e-5 * abs(y)) }
    }

    /// Invariant: computing the LM head and the loss only at rows that have a target (prompt tokens and
    /// padding skipped, forward and backward) gives the full head's loss and gradients.
    func testTargetOnlyLMHeadMatchesFullHead() throws {
        let s = try GradientCheck.make(recompute: false)
        let fullLoss = s.loss(), fullGradient = s.analyticGradient()
        var labels = s.labels
        let targets = labels.withUnsafeMutableBufferPointer { s.ws.selectTargets(labels: $0.baseAddress!) }
        XCTAssertEqual(targets, s.labels.filter { $0 >= 0 }.count)
        XCTAssertEqual(s.ws.logitRows, targets)
        s.adapter.arena.zeroGradients()
        s.model.forward(s.ws, adapter: s.adapter)
        let selectedLoss = s.model.crossEntropy(logits: s.ws.logits.pointer, labels: labels, rows: s.ws.logitRows, gradScale: 1.0 / 5) / 5
        s.model.backward(s.ws, adapter: s.adapter)
        XCTAssertEqual(selectedLoss, fullLoss, accuracy: 1e-6 * abs(fullLoss))
        let selectedGradient = Array(UnsafeBufferPointer(start: s.adapter.arena.gradients, count: s.adapter.arena.count))
        for (x, y) in zip(selectedGradient, fullGradient) { XCTAssertEqual(x, y, accuracy: 1e-7 + 1e-5 * abs(y)) }
        s.ws.load([[1, 5, 9, 13, 2, 7], [3, 8, 4]])
        XCTAssertEqual(s.ws.logitRows, s.ws.rows, "a new load computes every row again")
    }
}
