// DoRA (LoRAOptions.useDoRA): gradients against finite differences (m, A, B and the input stream), the
// quantized bases against fp32 on the same weights, the cached norms against the parameters, merging, and the
// PEFT files' checks. PEFT's own numbers are in DoRAInteropTests.
import DTFormats
import DTKernels
import DTModel
import DTTraining
import Foundation
import TestSupport
import XCTest

/// Forwards every hook to a DoRA adapter and adds `offset` (N, C) to the input stream (through the
/// virtual-token hook, with no virtual tokens), keeping the gradient that reaches it: dL/d(input stream).
final class InputProbe: ModelAdapter {
    let inner: LoRAAdapter
    let offset: FloatBuffer, gradient: FloatBuffer   // (N, C) each
    init(_ inner: LoRAAdapter, rows: Int, channels: Int) {
        self.inner = inner
        offset = FloatBuffer(count: rows * channels); gradient = FloatBuffer(count: rows * channels)
    }
    func reserve(for workspace: ForwardWorkspace) { inner.reserve(for: workspace) }
    func adapts(layer: Int, _ p: TensorNames.Projection) -> Bool { inner.adapts(layer: layer, p) }
    func frozenOutputScale(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, rows: Int,
                           scratch: ProductScratch) -> FrozenOutputScale? {
        inner.frozenOutputScale(layer: layer, p, weight: weight, rows: rows, scratch: scratch)
    }
    func forward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                 y: UnsafeMutablePointer<Float>, rows: Int) {
        inner.forward(layer: layer, p, weight: weight, x: x, y: y, rows: rows)
    }
    func backward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                  dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, rows: Int) {
        inner.backward(layer: layer, p, weight: weight, x: x, dy: dy, dx: dx, rows: rows)
    }
    func embedVirtualTokens(stream: UnsafeMutablePointer<Float>, batch: Int, length: Int) {
        Vector.add(stream, offset.pointer, count: offset.count)
    }
    func backwardEmbeddings(dstream: UnsafePointer<Float>, batch: Int, length: Int) {
        gradient.pointer.update(from: dstream, count: gradient.count)
    }
}

final class DoRATests: XCTestCase {
    /// Invariant: the analytic gradients of m, A and B equal central finite differences of the loss with the
    /// norms ‖W + s·B·A‖ held at the unperturbed point (PEFT detaches them: no gradient flows through the norm).
    func testDoRAGradientsMatchFiniteDifferences() throws {
        let s = try GradientCheck.make(recompute: false, useDoRA: true)
        XCTAssertEqual(s.adapter.arena.entries.filter { $0.name.hasSuffix("lora_magnitude_vector") }.count, 7 * 2)
        s.check()
    }

    /// Invariant: the norm really is detached — differentiating through it (norms recomputed at every perturbed
    /// point) gives other directional derivatives than the analytic gradient, which the held norms reproduce.
    func testNormIsDetachedFromTheGradient() throws {
        let s = try GradientCheck.make(recompute: false, useDoRA: true)
        let held = s.directionalDerivatives(), through = s.directionalDerivatives(refreshing: true)
        for (h, t) in zip(held, through) {
            XCTAssertEqual(h.analytic, h.numeric, accuracy: 1e-3 * max(abs(h.numeric), 1e-3))
            XCTAssertGreaterThan(abs(t.numeric - t.analytic), 1e-2 * abs(t.numeric), "the norm's own derivative is not in the gradient")
        }
    }

    /// Invariant: dL/dx through DoRA projections (the frozen part (m/‖·‖ ⊙ dy)·W and the branch, residual
    /// stream included) equals finite differences of the loss w.r.t. the input stream.
    func testInputGradientMatchesFiniteDifferences() throws {
        let s = try GradientCheck.make(recompute: false, useDoRA: true)
        let probe = InputProbe(s.adapter, rows: s.ws.rows, channels: s.model.config.hiddenSize)
        _ = s.analyticGradient(probe)
        let analytic = probe.gradient.array
        var numeric: [Float] = [], picked: [Float] = []
        for i in stride(from: 0, to: probe.offset.count, by: 5) {
            let eps: Float = 1e-2
            probe.offset[i] = eps; let up = s.loss(probe)
            probe.offset[i] = -eps; let down = s.loss(probe)
            probe.offset[i] = 0
            numeric.append(Float((up - down) / Double(2 * eps)))
            picked.append(analytic[i])
        }
        XCTAssertGreaterThan(numeric.count, 40)
        XCTAssertGreaterThan(numeric.map(abs).max()!, 1e-3, "the input matters")
        XCTAssertLessThan(relativeError(picked, numeric), 1e-3)
    }

    /// Invariant: with dropout (on the branch's input, DoRA.swift), q/k/v biases and recompute — where the layers
    /// share one saved product per projection kind — the gradients still match finite differences.
    func testDoRAGradientsWithDropoutBiasAndRecomputeMatchFiniteDifferences() throws {
        let s = try GradientCheck.make(recompute: true, dropout: 0.2, bias: true, useDoRA: true)
        s.adapter.training = true
        s.adapter.rowKeys = (0..<12).map { UInt64($0) * 977 }
        s.check()
        let kept = try GradientCheck.make(recompute: false, dropout: 0.2, bias: true, useDoRA: true)
        kept.adapter.training = true
        kept.adapter.rowKeys = s.adapter.rowKeys
        XCTAssertLessThan(relativeError(s.analyticGradient(), kept.analyticGradient()), 1e-5, "recompute gives the kept products' gradient")
        XCTAssertLessThan(Double(s.adapter.doraBytes), 0.6 * Double(kept.adapter.doraBytes), "shared products take less memory")
        // The memory preflight's estimate is what the workspace's reserve allocated, shared and per layer.
        for c in [s, kept] {
            XCTAssertEqual(LoRAAdapter.doraBytes(model: c.model, options: c.adapter.options, rows: c.ws.maxRows, everyLayer: c.ws.keepsEveryLayer),
                           Double(c.adapter.doraBytes))
        }
    }

    /// Invariant: a fresh DoRA adapter (B = 0, m = ‖W‖) leaves the model's logits unchanged.
    func testFreshDoRAAdapterLeavesTheModelUnchanged() throws {
        let s = try GradientCheck.make(recompute: false)
        s.model.forward(s.ws)
        let base = s.ws.logits.array
        var options = s.adapter.options; options.useDoRA = true
        let fresh = LoRAAdapter(model: s.model, options: options, seed: 5)
        s.model.forward(s.ws, adapter: fresh)
        XCTAssertLessThan(zip(base, s.ws.logits.array).map { abs($0 - $1) }.max()!, 1e-5)
        let w = s.model.layers[1].projections[.down]!
        var dense = [Float](repeating: 0, count: w.rows * w.cols)
        w.dense(into: &dense)
        let m = fresh.arena.array(LoRAAdapter.magnitudeName(1, .down))
        for o in 0..<w.rows {
            XCTAssertEqual(m[o], (0..<w.cols).reduce(0) { $0 + dense[o * w.cols + $1] * dense[o * w.cols + $1] }.squareRoot(), accuracy: 1e-5)
        }
    }

    /// Invariant: an adapter's row scratch is sized by the workspace it runs with (`reserve(for:)`, which every pass
    /// calls), not by whoever made it: after a pass over a small inference workspace (DoRA's saved products then
    /// shared by the layers), a larger training workspace that keeps every layer grows it, and the loss and every
    /// gradient equal those of an identical adapter that only ever ran the large workspace.
    func testRowScratchGrowsWithTheWorkspace() throws {
        let s = try GradientCheck.make(recompute: false, dropout: 0.1, useDoRA: true)
        let weights = LoRAWeights(s.adapter, layers: 2, source: "test")
        let grown = weights.adapter(model: s.model, dropout: 0.1), direct = weights.adapter(model: s.model, dropout: 0.1)
        let small = ForwardWorkspace(model: s.model, batch: 1, length: 3)
        small.load([[1, 5, 9]])
        s.model.forward(small, adapter: grown)
        XCTAssertTrue(small.logits.array.allSatisfy(\.isFinite))
        func lossAndGradient(_ adapter: LoRAAdapter) -> (loss: Double, gradient: [Float]) {
            adapter.training = true
            adapter.arena.zeroGradients()
            s.model.forward(s.ws, adapter: adapter)
            let loss = s.model.crossEntropy(logits: s.ws.logits.pointer, labels: s.labels, rows: s.ws.rows, gradScale: 1)
            s.model.backward(s.ws, adapter: adapter)
            return (loss, Array(UnsafeBufferPointer(start: adapter.arena.gradients, count: adapter.arena.count)))
        }
        let a = lossAndGradient(grown), b = lossAndGradient(direct)
        XCTAssertEqual(a.loss, b.loss)
        XCTAssertEqual(a.gradient, b.gradient)
        XCTAssertGreaterThan(a.gradient.map(abs).max() ?? 0, 1e-4, "the gradient is not trivially zero")
    }

    /// Invariant: the norms cached per optimizer step follow the parameters: after AdamW steps (and `set`) the
    /// adapter gives the logits of a new adapter made from its tensors, whose norms are computed afresh.
    func testCachedNormsFollowTheParameters() throws {
        let s = try GradientCheck.make(recompute: false, useDoRA: true)
        var optimizer = AdamW()
        for _ in 0..<3 {
            _ = s.analyticGradient()
            optimizer.update(s.adapter.arena, lr: 0.05)
        }
        func logits(_ a: ModelAdapter) -> [Float] { s.model.forward(s.ws, adapter: a); return s.ws.logits.array }
        func fresh() -> LoRAAdapter { LoRAWeights(s.adapter, layers: 2, source: "test").adapter(model: s.model) }
        XCTAssertLessThan(zip(logits(s.adapter), logits(fresh())).map { abs($0 - $1) }.max()!, 1e-5, "after AdamW steps")
        let name = LoRAAdapter.tensorName(0, .gate, "B")
        s.adapter.arena.set(name, s.adapter.arena.array(name).map { $0 * 3 })
        let changed = logits(s.adapter)
        XCTAssertLessThan(zip(changed, logits(fresh())).map { abs($0 - $1) }.max()!, 1e-5, "after set")
    }

    /// Invariant: QLoRA + DoRA over NF4 + double quantization gives the loss and gradients of DoRA over an fp32
    /// base holding the same (dequantized) weights (1e-5), and directional finite differences.
    func testNF4DoRAEqualsFP32DoRAOnTheDequantizedWeights() throws {
        let dir = TinyModel.write()
        let nf4 = try GradientCheck.make(recompute: false, precision: .nf4, useDoRA: true, modelDirectory: dir)
        guard case .nf4 = nf4.model.layers[0].projections[.q]!.storage else { return XCTFail("q is not held in NF4") }
        let dense = try GradientCheck.make(recompute: false, useDoRA: true, modelDirectory: try dequantizedCopy(dir, of: nf4.model))
        XCTAssertEqual(nf4.loss(), dense.loss(), accuracy: 1e-5 * abs(dense.loss()))
        XCTAssertLessThan(relativeError(nf4.analyticGradient(), dense.analyticGradient()), 1e-5)
        for (analytic, numeric) in nf4.directionalDerivatives() {
            XCTAssertEqual(analytic, numeric, accuracy: 1e-3 * max(abs(numeric), 1e-3), "directional derivative")
        }
    }

    /// Invariant: DoRA over a GGUF base kept as stored (Q8_0 blocks, llama.cpp's permuted Q/K rows, dequantized
    /// per use) gives the fp32-dequantized base's loss and gradients.
    func testGGUFAsStoredDoRAEqualsFP32() throws {
        let path = TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/tiny/llama_q8.gguf.bin"
        let stored = try LlamaModel(source: ModelSource(path: path), precision: .asStored)
        let fp32 = try LlamaModel(source: ModelSource(path: path))
        guard case .quantized(.q8_0, _, _) = stored.layers[0].projections[.q]!.storage else { return XCTFail("q is not Q8_0 blocks") }
        func setup(_ model: LlamaModel) -> (LoRAAdapter, ForwardWorkspace) {
            var o = LoRAOptions(); o.rank = 4; o.useDoRA = true
            let ws = ForwardWorkspace(model: model, batch: 1, length: 8, mode: .training(recompute: false))
            let adapter = LoRAAdapter(model: model, options: o, seed: 2)
            var rng = SeededRandom(seed: 4)
            for e in adapter.arena.entries where !e.name.contains("lora_A") {
                adapter.arena.set(e.name, adapter.arena.array(e.name).map { $0 == 0 ? 0.05 * rng.normal() : $0 * (1 + 0.2 * rng.normal()) })
            }
            ws.load([[3, 17, 42, 5, 250, 11, 99, 7]])
            return (adapter, ws)
        }
        var results: [(Double, [Float])] = []
        for model in [stored, fp32] {
            let (adapter, ws) = setup(model)
            let labels: [Int32] = [17, 42, 5, 250, 11, 99, 7, -100]
            model.forward(ws, adapter: adapter)
            let loss = model.crossEntropy(logits: ws.logits.pointer, labels: labels, rows: ws.rows, gradScale: 1)
            model.backward(ws, adapter: adapter)
            results.append((loss, Array(UnsafeBufferPointer(start: adapter.arena.gradients, count: adapter.arena.count))))
        }
        XCTAssertEqual(results[0].0, results[1].0, accuracy: 1e-5 * abs(results[1].0))
        XCTAssertLessThan(relativeError(results[0].1, results[1].1), 1e-5)
        XCTAssertGreaterThan(results[1].1.map(abs).max()!, 0)
    }

    /// Invariant: DoRA with bf16 products (the per-step norm product rounds A and W too) gives the fp32 loss
    /// within bf16's precision and gradients pointing the same way (cosine ≥ 0.999).
    func testBF16DoRAGradientsMatchFP32() throws {
        guard CPUFeatures.hasBF16Products else { throw XCTSkip("no bf16 instructions") }
        let reference = try GradientCheck.make(recompute: false, useDoRA: true)
        let bf16 = try GradientCheck.make(recompute: false, compute: .bf16, useDoRA: true)
        XCTAssertEqual(bf16.loss(), reference.loss(), accuracy: 1e-2 * abs(reference.loss()))
        let a = bf16.analyticGradient(), b = reference.analyticGradient()
        var dot: Double = 0, na: Double = 0, nb: Double = 0
        for (x, y) in zip(a, b) { dot += Double(x) * Double(y); na += Double(x * x); nb += Double(y * y) }
        XCTAssertGreaterThanOrEqual(dot / (na * nb).squareRoot(), 0.999)
    }

    /// Invariant: `use_dora` is a strict true/false key that reaches the LoRA options, survives config.yaml, must
    /// match on resume, and is taken from a DoRA `init_adapter`.
    func testUseDoRAKey() throws {
        var c = TrainConfig()
        try c.apply(yaml: "use_dora: true\n", source: "run.yaml")
        XCTAssertTrue(c.loraOptions.useDoRA)
        var back = TrainConfig()
        try back.apply(yaml: c.yaml, source: "config.yaml")
        XCTAssertEqual(back, c)
        var strict = TrainConfig()
        XCTAssertThrowsError(try strict.apply(yaml: "use_dora: 1\n", source: "run.yaml")) { e in
            XCTAssertTrue("\(e)".contains("use_dora") && "\(e)".contains("true or false"), "\(e)")
        }
        XCTAssertEqual(TrainConfig.key(named: "use_dora").onResume, .mustMatch)
        var fromAdapter = TrainConfig()
        var dora = LoRAOptions(); dora.useDoRA = true
        fromAdapter.adopt(dora)
        XCTAssertTrue(fromAdapter.useDoRA)
    }

    /// A copy of the tiny model at `dir` whose projections hold `model`'s weights as it multiplies by them.
    func dequantizedCopy(_ dir: String, of model: LlamaModel) throws -> String {
        let file = try SafetensorsFile(path: dir + "/model.safetensors")
        var entries: [SafetensorsWriter.Entry] = []
        for name in file.tensors.keys.sorted() {
            var values = try file.floats(name)
            if let l = (0..<model.config.layers).first(where: { name.hasPrefix("model.layers.\($0).") }),
               let p = TensorNames.Projection.allCases.first(where: { name == TensorNames.projection(l, $0) }) {
                model.layers[l].projections[p]!.dense(into: &values)
            }
            entries.append(.init(name: name, shape: file.tensors[name]!.shape, values: values))
        }
        let out = temporaryDirectory()
        try SafetensorsWriter.encode(entries).write(to: URL(fileURLWithPath: out + "/model.safetensors"))
        try FileManager.default.copyItem(atPath: dir + "/config.json", toPath: out + "/config.json")
        return out
    }
}
