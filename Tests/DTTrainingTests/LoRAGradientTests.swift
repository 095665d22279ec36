// Whole-model gradient check with LoRA on every projection of a tiny random Llama: the analytic gradient
// of the mean token loss w.r.t. all adapter tensors against central finite differences.
import DTKernels
import DTModel
import DTTraining
import Foundation
import TestSupport
import XCTest

final class LoRAGradientTests: XCTestCase {
    struct Setup {
        let model: LlamaModel
        let adapter: LoRAAdapter
        let ws: ForwardWorkspace
        let labels: [Int32]
    }

    func makeSetup(recompute: Bool, dropout: Float = 0, bias: Bool = false, precision: WeightPrecision = .fp32,
                   compute: ComputePrecision = .fp32) throws -> Setup {
        var shape = TinyModel.Shape(); shape.bias = bias
        let model = try LlamaModel(source: ModelSource(path: TinyModel.write(shape)), precision: precision, compute: compute)
        var options = LoRAOptions(); options.rank = 4; options.alpha = 8; options.dropout = dropout
        let ws = ForwardWorkspace(model: model, batch: 2, length: 6, mode: .training(recompute: recompute))
        let adapter = LoRAAdapter(model: model, options: options, maxRows: ws.rows, seed: 3)
        // B = 0 at init would hide A's gradient: give B random values for the check.
        var rng = SeededRandom(seed: 9)
        for e in adapter.arena.entries where e.name.contains("lora_B") {
            adapter.arena.set(e.name, (0..<e.count).map { _ in 0.3 * rng.normal() })
        }
        ws.load([[1, 5, 9, 13, 2, 7], [3, 8, 4]])
        // Next-token labels; the padded tail of sequence 2 and each last position are ignored.
        let labels: [Int32] = [5, 9, 13, 2, 7, -100, 8, 4, -100, -100, -100, -100]
        return Setup(model: model, adapter: adapter, ws: ws, labels: labels)
    }

    func loss(_ s: Setup) -> Double {
        s.model.forward(s.ws, adapter: s.adapter)
        return LlamaModel.crossEntropy(logits: s.ws.logits.pointer, labels: s.labels, rows: s.ws.rows,
                                       vocab: s.model.config.vocabSize, gradScale: 1) / 5
    }

    func analyticGradient(_ s: Setup) -> [Float] {
        s.adapter.arena.zeroGradients()
        s.model.forward(s.ws, adapter: s.adapter)
        _ = LlamaModel.crossEntropy(logits: s.ws.logits.pointer, labels: s.labels, rows: s.ws.rows,
                                    vocab: s.model.config.vocabSize, gradScale: 1.0 / 5)
        s.model.backward(s.ws, adapter: s.adapter)
        return Array(UnsafeBufferPointer(start: s.adapter.arena.gradients, count: s.adapter.arena.count))
    }

    /// Directional derivative along random directions plus per-coordinate checks on a sample of entries.
    /// `rounding`: an absolute allowance for the fp32 rounding of the loss in the central difference (0 here).
    func check(_ s: Setup, rounding: Double = 0, file: StaticString = #filePath, line: UInt = #line) {
        let g = analyticGradient(s)
        let arena = s.adapter.arena
        let p = arena.values.pointer
        let original = Array(UnsafeBufferPointer(start: p, count: arena.count))
        var rng = SeededRandom(seed: 11)
        for _ in 0..<3 {
            var d = (0..<arena.count).map { _ in rng.normal() }
            let dn = d.reduce(0) { $0 + $1 * $1 }.squareRoot()
            d = d.map { $0 / dn }
            // Unit direction, step 1e-2: truncation and fp32 rounding both stay near 1e-4 relative.
            let eps: Float = 1e-2
            for i in 0..<arena.count { p[i] = original[i] + eps * d[i] }
            let up = loss(s)
            for i in 0..<arena.count { p[i] = original[i] - eps * d[i] }
            let down = loss(s)
            for i in 0..<arena.count { p[i] = original[i] }
            let numeric = (up - down) / Double(2 * eps)
            let analytic = zip(g, d).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            XCTAssertEqual(analytic, numeric, accuracy: 1e-3 * max(abs(numeric), 1e-3) + rounding, "directional derivative", file: file, line: line)
        }
        var numeric: [Float] = [], analytic: [Float] = []
        for e in arena.entries where e.name.contains("layers.0.") || e.name.contains("layers.1.mlp.down") {
            for k in stride(from: 0, to: e.count, by: max(1, e.count / 5)) {
                let i = e.offset + k
                let eps: Float = 1e-2
                p[i] = original[i] + eps; let up = loss(s)
                p[i] = original[i] - eps; let down = loss(s)
                p[i] = original[i]
                numeric.append(Float((up - down) / Double(2 * eps)))
                analytic.append(g[i])
            }
        }
        var diff: Float = 0, norm: Float = 0
        for (a, n) in zip(analytic, numeric) { diff += (a - n) * (a - n); norm += n * n }
        XCTAssertLessThan((diff / norm).squareRoot(), 1e-3, "per-coordinate relative error", file: file, line: line)
    }

    func testLoRAGradientsMatchFiniteDifferences() throws { check(try makeSetup(recompute: false)) }

    /// Invariant: recomputing activations in backward gives the same gradients as keeping them.
    func testRecomputeGivesTheSameGradients() throws {
        let kept = analyticGradient(try makeSetup(recompute: false))
        let recomputed = analyticGradient(try makeSetup(recompute: true))
        XCTAssertEqual(kept.count, recomputed.count)
        for (a, b) in zip(kept, recomputed) { XCTAssertEqual(a, b, accuracy: 1e-6 + 1e-5 * abs(a)) }
    }

    /// Invariant: the QLoRA path — weights dequantized per use, the embedding / LM head in row chunks (here
    /// several, the last one partial) — gives the fp32 path's loss and gradients.
    func testChunkedQuantizedPathGivesTheSameGradients() throws {
        let quantized = try makeSetup(recompute: false, precision: .asStored)
        XCTAssertGreaterThan(quantized.model.embedding.rows % quantized.model.embedding.chunkRows, 0, "want a partial last chunk")
        XCTAssertLessThan(quantized.model.embedding.chunkRows, quantized.model.embedding.rows, "want several chunks")
        let dense = try makeSetup(recompute: false)
        XCTAssertEqual(loss(quantized), loss(dense), accuracy: 1e-6)
        let a = analyticGradient(quantized), b = analyticGradient(dense)
        var diff: Float = 0, norm: Float = 0
        for (x, y) in zip(a, b) { diff += (x - y) * (x - y); norm += y * y }
        XCTAssertLessThan((diff / norm).squareRoot(), 1e-5)
    }

    func testGradientsWithDropoutAndQKVBiasMatchFiniteDifferences() throws {
        let s = try makeSetup(recompute: true, dropout: 0.2, bias: true)
        s.adapter.training = true
        s.adapter.rowKeys = (0..<12).map { UInt64($0) * 977 }
        check(s)
    }

    /// Invariant: with B = 0 (PEFT init) the adapted model equals the base model exactly.
    func testFreshAdapterLeavesTheModelUnchanged() throws {
        let s = try makeSetup(recompute: false)
        s.model.forward(s.ws)
        let base = s.ws.logits.array
        let fresh = LoRAAdapter(model: s.model, options: s.adapter.options, maxRows: s.ws.rows, seed: 5)
        s.model.forward(s.ws, adapter: fresh)
        XCTAssertEqual(base, s.ws.logits.array)
        XCTAssertGreaterThan(fresh.arena.array(LoRAAdapter.tensorName(0, .q, "A")).map(abs).max()!, 0)
    }

    /// Invariant: the bf16 products (weights rounded at load, activations rounded at each product's input,
    /// fp32 accumulation) give the fp32 path's loss within bf16's precision and gradients pointing the same
    /// way (cosine ≥ 0.999), with and without recomputation.
    func testBF16PathGradientsMatchFP32() throws {
        for recompute in [false, true] {
            let reference = try makeSetup(recompute: recompute)
            let bf16 = try makeSetup(recompute: recompute, compute: .bf16)
            XCTAssertEqual(bf16.model.layers[0].projections[.q]!.storedBytes, 2 * 32 * 32, "q held in bf16")
            let (l32, l16) = (loss(reference), loss(bf16))
            XCTAssertNotEqual(l32, l16, "the bf16 path really rounds")
            XCTAssertEqual(l16, l32, accuracy: 1e-2 * abs(l32))
            let a = analyticGradient(bf16), b = analyticGradient(reference)
            var dot: Double = 0, na: Double = 0, nb: Double = 0
            for (x, y) in zip(a, b) { dot += Double(x) * Double(y); na += Double(x * x); nb += Double(y * y) }
            XCTAssertGreaterThanOrEqual(dot / (na * nb).squareRoot(), 0.999, "cosine of bf16 and fp32 gradients, recompute \(recompute)")
        }
    }

    /// Invariant: a quantized base dequantized per use into bf16 scratch gives exactly what rounding the same
    /// dequantized weights to bf16 once at load gives (the per-use path adds no error of its own).
    func testPerUseBF16DequantizationEqualsRoundingAtLoad() throws {
        let perUse = try makeSetup(recompute: false, precision: .asStored, compute: .bf16)
        let atLoad = try makeSetup(recompute: false, compute: .bf16)
        XCTAssertEqual(loss(perUse), loss(atLoad), accuracy: 1e-6 * abs(loss(atLoad)))
        let a = analyticGradient(perUse), b = analyticGradient(atLoad)
        for (x, y) in zip(a, b) { XCTAssertEqual(x, y, accuracy: 1e-6 + 1e-5 * abs(y)) }
    }

    /// Invariant: computing the LM head and the loss only at rows that have a target (prompt tokens and
    /// padding skipped, forward and backward) gives the full head's loss and gradients.
    func testTargetOnlyLMHeadMatchesFullHead() throws {
        let s = try makeSetup(recompute: false)
        let fullLoss = loss(s), fullGradient = analyticGradient(s)
        var labels = s.labels
        let targets = labels.withUnsafeMutableBufferPointer { s.ws.selectTargets(labels: $0.baseAddress!) }
        XCTAssertEqual(targets, s.labels.filter { $0 >= 0 }.count)
        XCTAssertEqual(s.ws.logitRows, targets)
        s.adapter.arena.zeroGradients()
        s.model.forward(s.ws, adapter: s.adapter)
        let selectedLoss = LlamaModel.crossEntropy(logits: s.ws.logits.pointer, labels: labels, rows: s.ws.logitRows,
                                                   vocab: s.model.config.vocabSize, gradScale: 1.0 / 5) / 5
        s.model.backward(s.ws, adapter: s.adapter)
        XCTAssertEqual(selectedLoss, fullLoss, accuracy: 1e-6 * abs(fullLoss))
        let selectedGradient = Array(UnsafeBufferPointer(start: s.adapter.arena.gradients, count: s.adapter.arena.count))
        for (x, y) in zip(selectedGradient, fullGradient) { XCTAssertEqual(x, y, accuracy: 1e-7 + 1e-5 * abs(y)) }
        s.ws.load([[1, 5, 9, 13, 2, 7], [3, 8, 4]])
        XCTAssertEqual(s.ws.logitRows, s.ws.rows, "a new load computes every row again")
    }
}
