// The whole-model gradient check shared by the LoRA and DoRA tests: a tiny random Llama with an adapter on
// every projection, the mean token loss of a fixed two-sequence batch, its analytic gradient w.r.t. all adapter
// tensors, and central finite differences along random directions and on sampled coordinates.
import DTKernels
import DTModel
import DTTraining
import Foundation
import TestSupport
import XCTest

struct GradientCheck {
    let model: LlamaModel
    let adapter: LoRAAdapter
    let ws: ForwardWorkspace
    let labels: [Int32]

    /// LoRA (or DoRA with `useDoRA`) r = 4 on every projection; B random (B = 0 at init would hide A's gradient)
    /// and DoRA's magnitudes moved off the row norms they start at.
    static func make(recompute: Bool, dropout: Float = 0, bias: Bool = false, precision: WeightPrecision = .fp32,
                     compute: ComputePrecision = .fp32, useDoRA: Bool = false, modelDirectory: String? = nil) throws -> GradientCheck {
        var shape = TinyModel.Shape(); shape.bias = bias
        let model = try LlamaModel(source: ModelSource(path: modelDirectory ?? TinyModel.write(shape)), precision: precision, compute: compute)
        var options = LoRAOptions(); options.rank = 4; options.alpha = 8; options.dropout = dropout; options.useDoRA = useDoRA
        let ws = ForwardWorkspace(model: model, batch: 2, length: 6, mode: .training(recompute: recompute))
        let adapter = LoRAAdapter(model: model, options: options, seed: 3)
        var rng = SeededRandom(seed: 9)
        for e in adapter.arena.entries where e.name.contains("lora_B") {
            adapter.arena.set(e.name, (0..<e.count).map { _ in 0.3 * rng.normal() })
        }
        for e in adapter.arena.entries where e.name.contains("lora_magnitude_vector") {
            adapter.arena.set(e.name, adapter.arena.array(e.name).map { $0 * (1 + 0.3 * rng.normal()) })
        }
        ws.load([[1, 5, 9, 13, 2, 7], [3, 8, 4]])
        // Next-token labels; the padded tail of sequence 2 and each last position are ignored.
        let labels: [Int32] = [5, 9, 13, 2, 7, -100, 8, 4, -100, -100, -100, -100]
        return GradientCheck(model: model, adapter: adapter, ws: ws, labels: labels)
    }

    func loss(_ adapter: ModelAdapter? = nil) -> Double {
        model.forward(ws, adapter: adapter ?? self.adapter)
        return model.crossEntropy(logits: ws.logits.pointer, labels: labels, rows: ws.rows, gradScale: 1) / 5
    }

    func analyticGradient(_ adapter: ModelAdapter? = nil) -> [Float] {
        self.adapter.arena.zeroGradients()
        model.forward(ws, adapter: adapter ?? self.adapter)
        _ = model.crossEntropy(logits: ws.logits.pointer, labels: labels, rows: ws.rows, gradScale: 1.0 / 5)
        model.backward(ws, adapter: adapter ?? self.adapter)
        return Array(UnsafeBufferPointer(start: self.adapter.arena.gradients, count: self.adapter.arena.count))
    }

    /// (analytic, numeric) directional derivatives along 3 random unit directions, step 1e-2. Values are written
    /// through the arena's pointer, which leaves its version (DoRA keeps the norms of the unperturbed point) unless
    /// `refreshing`, which marks every perturbed point as new parameters.
    func directionalDerivatives(refreshing: Bool = false) -> [(analytic: Double, numeric: Double)] {
        let g = analyticGradient()
        let arena = adapter.arena
        let p = arena.values.pointer
        let original = Array(UnsafeBufferPointer(start: p, count: arena.count))
        var rng = SeededRandom(seed: 11)
        var out: [(Double, Double)] = []
        for _ in 0..<3 {
            var d = (0..<arena.count).map { _ in rng.normal() }
            let dn = d.reduce(0) { $0 + $1 * $1 }.squareRoot()
            d = d.map { $0 / dn }
            // Unit direction, step 1e-2: truncation and fp32 rounding both stay near 1e-4 relative.
            let eps: Float = 1e-2
            for i in 0..<arena.count { p[i] = original[i] + eps * d[i] }
            if refreshing { arena.valuesChanged() }
            let up = loss()
            for i in 0..<arena.count { p[i] = original[i] - eps * d[i] }
            if refreshing { arena.valuesChanged() }
            let down = loss()
            for i in 0..<arena.count { p[i] = original[i] }
            if refreshing { arena.valuesChanged() }
            out.append((zip(g, d).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }, (up - down) / Double(2 * eps)))
        }
        return out
    }

    /// Directional derivatives plus per-coordinate checks on a sample of entries (layer 0 and layer 1's down_proj).
    /// `rounding`: an absolute allowance for the fp32 rounding of a large loss in the directional differences.
    func check(rounding: Double = 0, file: StaticString = #filePath, line: UInt = #line) {
        for (analytic, numeric) in directionalDerivatives() {
            XCTAssertEqual(analytic, numeric, accuracy: 1e-3 * max(abs(numeric), 1e-3) + rounding, "directional derivative", file: file, line: line)
        }
        let g = analyticGradient()
        let arena = adapter.arena
        let p = arena.values.pointer
        var numeric: [Float] = [], analytic: [Float] = []
        for e in arena.entries where e.name.contains("layers.0.") || e.name.contains("layers.1.mlp.down") {
            for k in stride(from: 0, to: e.count, by: max(1, e.count / 5)) {
                let i = e.offset + k, original = p[i]
                // Central differences at steps h and h/2 combined (Richardson): the h² truncation term cancels, so
                // strongly curved coordinates (DoRA's magnitudes) are checked as tightly as flat ones.
                func central(_ h: Float) -> Double {
                    p[i] = original + h; let up = loss()
                    p[i] = original - h; let down = loss()
                    p[i] = original
                    return (up - down) / Double(2 * h)
                }
                let h: Float = 1e-2
                numeric.append(Float((4 * central(h / 2) - central(h)) / 3))
                analytic.append(g[i])
            }
        }
        var diff: Float = 0, norm: Float = 0
        for (a, n) in zip(analytic, numeric) { diff += (a - n) * (a - n); norm += n * n }
        print("gradient check: per-coordinate relative error \((diff / norm).squareRoot()) over \(numeric.count) coordinates")
        // Measured with the h, h/2 extrapolation: LoRA 0.8–1.0e-4, DoRA 1.2e-4, qwen3/mistral 1.3–2.1e-4, gemma3 6.7e-4
        // (its 27-nat fp32 loss rounds at the 1e-6 level, which the h/2 difference amplifies).
        XCTAssertLessThan((diff / norm).squareRoot(), 1e-3, "per-coordinate relative error", file: file, line: line)
    }
}

/// ‖a − b‖ / ‖b‖.
func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    precondition(a.count == b.count)
    var diff: Float = 0, norm: Float = 0
    for (x, y) in zip(a, b) { diff += (x - y) * (x - y); norm += y * y }
    return (diff / norm).squareRoot()
}
