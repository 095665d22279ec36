// DoRA (Liu et al. 2024, weight-decomposed low-rank adaptation) as PEFT 0.21 computes it
// (peft/tuners/lora/dora.py DoraLinearLayer, variants.py DoraLinearVariant): LoRA's A (r, in) and B (out, r)
// plus a magnitude m (out) per adapted projection, initialised to the row norms ‖W + s·B·A‖ over the input
// dimension (B = 0: ‖W‖). With n = ‖W + s·B·A‖ per row, detached — no gradient flows through it (DoRA §4.3) —
// and mns = m / n:
//     y = mns ⊙ (x·Wᵀ + s·B·A·x)         PEFT: x·Wᵀ + (mns − 1) ⊙ x·Wᵀ + mns ⊙ s·B·A·x, the same sum
// The choke point scales the frozen product through `frozenOutputScale` (LlamaModel.project /
// projectBackward); this file keeps the norms, the saved products and takes m's gradient:
//     forward:  z = x·Wᵀ (written by the choke point) + s·u·Bᵀ (LoRA's forward, u = dropout(x)·Aᵀ, into z),
//               then the choke point: y (+)= mns ⊙ z
//     backward: g = mns ⊙ dy (left by the choke point, which also takes dx = g·W), dm += Σ_rows dy ⊙ z / n,
//               then LoRA's backward with g for dy (dA, dB, dx through the branch).
// Dropout (lora_dropout > 0, training) applies to the branch's input only, as in LoRA. PEFT's training forward
// then computes its (mns − 1) term with a second frozen product of dropout(x) — the same output in expectation,
// identical without dropout and at eval — which would cost one more frozen product per projection each way.
// The norms never materialise W + s·B·A: n² = ‖W‖² + 2s·⟨W, B·A⟩ + s²·‖B·A‖² per row, with ‖W‖² once at
// construction (W dequantized once), ⟨W_o, (B·A)_o⟩ = Σ_k B[o,k]·(A·Wᵀ)[k,o] from one frozen product of r rows
// (the FrozenMatrix's own forward: any storage, QLoRA, sharded), ‖(B·A)_o‖² = b_o·(A·Aᵀ)·b_oᵀ; recomputed when the
// arena's version moves (once per optimizer step). With bf16 products that frozen product rounds A and W to bf16.
import DTKernels
import DTModel

final class DoRAMagnitudes {
    final class Slot {
        let layer: Int, projection: TensorNames.Projection
        let a: ParameterArena.Entry, b: ParameterArena.Entry, magnitude: ParameterArena.Entry
        let inFeatures: Int, outFeatures: Int
        let weightSquares: [Double]          // (out) ‖W‖² per row, from construction
        let inverseNorm: FloatBuffer         // (out) 1 / ‖W + s·B·A‖ (0 for a row that is all zero)
        let scale: FloatBuffer               // (out) m / ‖W + s·B·A‖
        var product = FloatBuffer(count: 0)  // (rows, out) z; one per projection kind unless every layer keeps its own
        var normsVersion: UInt64?            // arena version the norms were computed at
        init(layer: Int, projection: TensorNames.Projection, a: ParameterArena.Entry, b: ParameterArena.Entry,
             magnitude: ParameterArena.Entry, inFeatures: Int, outFeatures: Int, weightSquares: [Double]) {
            self.layer = layer; self.projection = projection; self.a = a; self.b = b; self.magnitude = magnitude
            self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.weightSquares = weightSquares
            inverseNorm = FloatBuffer(count: outFeatures); scale = FloatBuffer(count: outFeatures)
        }
    }

    let arena: ParameterArena
    let rank: Int, scaleFactor: Float
    private(set) var slots: [Int: Slot] = [:]            // key: LoRAAdapter.key(layer, projection)
    /// Rows the saved products hold (`reserve`), and whether every layer keeps its z until backward (a training
    /// workspace without recompute); else the layers share one z per projection kind, refilled by each layer's
    /// forward (recompute reruns it just before its backward).
    private(set) var reservedRows = 0
    private(set) var savesEveryLayer = false
    private var filledBy: [TensorNames.Projection: Int] = [:]   // the layer whose z a shared buffer holds
    private var scaledGradient = FloatBuffer(count: 0)   // (rows, max out) mns ⊙ dy, written by the choke point in backward
    private let columnSums: FloatBuffer    // (max out)
    private let aTimesW: FloatBuffer       // (r, max out) A · Wᵀ
    private let gram: FloatBuffer          // (r, r) A · Aᵀ
    private var productScratch: ProductScratch?   // the model's product scratch with its own input buffer
    private let maxIn: Int, maxOut: Int

    /// m and the norms of every adapted projection of `model`; A and B must hold their values. m is set to
    /// ‖W + s·B·A‖ (PEFT's initialisation) unless `magnitudes` gives it (key → (out) values).
    init(model: LlamaModel, arena: ParameterArena, options: LoRAOptions,
         targets: [(key: Int, layer: Int, p: TensorNames.Projection, a: ParameterArena.Entry, b: ParameterArena.Entry, magnitude: ParameterArena.Entry)],
         magnitudes: [Int: [Float]]?) {
        self.arena = arena
        rank = options.rank; scaleFactor = options.scale
        var maxOut = 0, maxIn = 0, largest = 0
        for t in targets {
            let w = model.layers[t.layer].projections[t.p]!
            maxOut = max(maxOut, w.rows); maxIn = max(maxIn, w.cols)
            if w.densePointer == nil { largest = max(largest, w.rows * w.cols) }
        }
        self.maxIn = maxIn; self.maxOut = maxOut
        columnSums = FloatBuffer(count: maxOut)
        aTimesW = FloatBuffer(count: rank * maxOut)
        gram = FloatBuffer(count: rank * rank)
        let dequantized = FloatBuffer(count: largest, zeroed: false)   // (out, in) W of a projection not held in fp32
        for t in targets {
            let w = model.layers[t.layer].projections[t.p]!
            let (out, inF) = (w.rows, w.cols)
            let dense: UnsafePointer<Float> = w.densePointer ?? {
                w.dense(into: dequantized.pointer)   // all-gathers a sharded weight: every rank runs this, in order
                return UnsafePointer(dequantized.pointer)
            }()
            var squares = [Double](repeating: 0, count: out)
            for o in 0..<out {
                var sum = 0.0
                for i in 0..<inF { sum += Double(dense[o * inF + i]) * Double(dense[o * inF + i]) }
                squares[o] = sum
            }
            let magnitude = t.magnitude
            let slot = Slot(layer: t.layer, projection: t.p, a: t.a, b: t.b, magnitude: magnitude,
                            inFeatures: inF, outFeatures: out, weightSquares: squares)
            slots[t.key] = slot
            if let given = magnitudes?[t.key] {
                precondition(given.count == out, "magnitude of \(out) values expected, given \(given.count)")
                arena.value(magnitude).update(from: given, count: out)
            } else {
                // P (r, out) = A · Wᵀ from the dense W, then m = ‖W + s·B·A‖ per row.
                BLAS.linear(arena.value(slot.a), dense, aTimesW.pointer, rows: rank, inFeatures: inF, outFeatures: out)
                computeNorms(slot)
                let m = arena.value(magnitude)
                for o in 0..<out { m[o] = slot.inverseNorm[o] > 0 ? 1 / slot.inverseNorm[o] : 0 }
            }
        }
        arena.valuesChanged()
    }

    /// Allocates the saved products z and the scaled gradient for `rows` rows: one z per adapted projection when
    /// `everyLayer`, else one per projection kind shared by the layers. Grows only (rows, and shared → per layer).
    func reserve(rows: Int, everyLayer: Bool) {
        guard rows > reservedRows || (everyLayer && !savesEveryLayer) else { return }
        reservedRows = max(rows, reservedRows); savesEveryLayer = savesEveryLayer || everyLayer
        scaledGradient = FloatBuffer(count: reservedRows * maxOut, zeroed: false)
        var widest: [TensorNames.Projection: Int] = [:]
        for slot in slots.values { widest[slot.projection] = max(widest[slot.projection] ?? 0, slot.outFeatures) }
        let shared = widest.mapValues { FloatBuffer(count: reservedRows * $0, zeroed: false) }
        for slot in slots.values {
            slot.product = savesEveryLayer ? FloatBuffer(count: reservedRows * slot.outFeatures, zeroed: false) : shared[slot.projection]!
        }
        filledBy = [:]
    }

    /// Bytes of the saved products z and the scaled gradient allocated now.
    var savedBytes: Int {
        var seen = Set<ObjectIdentifier>(), total = 0
        for s in slots.values where seen.insert(ObjectIdentifier(s.product)).inserted { total += s.product.count * 4 }
        return total + scaledGradient.count * 4
    }

    /// Bytes `reserve(rows:everyLayer:)` allocates for `targets` of `model`: the saved products and the scaled
    /// gradient (what DoRA keeps beyond LoRA), for memory estimates before anything is allocated.
    static func savedBytes(model: LlamaModel, targets: [TensorNames.Projection], rows: Int, everyLayer: Bool) -> Double {
        var perLayer = 0, widest: [TensorNames.Projection: Int] = [:]
        for layer in model.layers {
            for p in targets {
                guard let w = layer.projections[p] else { continue }
                perLayer += w.rows
                widest[p] = max(widest[p] ?? 0, w.rows)
            }
        }
        let products = everyLayer ? perLayer : widest.values.reduce(0, +)
        return 4 * Double(rows) * Double(products + (widest.values.max() ?? 0))
    }

    /// 1 / ‖W + s·B·A‖ per row of `slot` into its inverseNorm, from P = A · Wᵀ in `aTimesW`.
    private func computeNorms(_ slot: Slot) {
        let (r, out, inF, s) = (rank, slot.outFeatures, slot.inFeatures, Double(scaleFactor))
        let a = arena.value(slot.a), b = arena.value(slot.b), p = aTimesW.pointer, g = gram.pointer
        // G (r, r) = A (r, in) · Aᵀ
        BLAS.gemm(.noTrans, .trans, m: r, n: r, k: inF, a: a, lda: inF, b: a, ldb: inF, c: g, ldc: r)
        for o in 0..<out {
            var cross = 0.0, quadratic = 0.0   // ⟨W_o, (B·A)_o⟩ and ‖(B·A)_o‖²
            for k in 0..<r {
                let bk = Double(b[o * r + k])
                cross += bk * Double(p[k * out + o])
                var gb = 0.0
                for l in 0..<r { gb += Double(g[k * r + l]) * Double(b[o * r + l]) }
                quadratic += bk * gb
            }
            let squared = slot.weightSquares[o] + 2 * s * cross + s * s * quadratic
            slot.inverseNorm[o] = squared > 0 ? Float(1 / squared.squareRoot()) : 0
        }
    }

    /// The choke point's scale for `key`: norms recomputed if the parameters changed since they were taken.
    func outputScale(_ key: Int, weight: FrozenMatrix, rows: Int, scratch: ProductScratch) -> FrozenOutputScale {
        let slot = slots[key]!
        precondition(rows <= reservedRows, "DoRA holds \(reservedRows) rows, asked for \(rows)")
        if slot.normsVersion != arena.version {
            if productScratch?.sharesWeights(with: scratch) != true {
                productScratch = scratch.sharingWeights(inputElements: rank * maxIn)
            }
            Profile.measure("adapter norms") {
                // P (r, out) = A (r, in) · Wᵀ: the frozen product of r rows (gathers a sharded W on every rank).
                weight.forward(arena.value(slot.a), rows: rank, into: aTimesW.pointer, scratch: productScratch!)
                computeNorms(slot)
            }
            slot.normsVersion = arena.version
        }
        let m = arena.value(slot.magnitude)
        for o in 0..<slot.outFeatures { slot.scale[o] = m[o] * slot.inverseNorm[o] }
        return FrozenOutputScale(scale: slot.scale.pointer, product: slot.product.pointer, scaledGradient: scaledGradient.pointer)
    }

    /// LoRA's forward has added s·u·Bᵀ to the product: z of `key` is complete (and holds this layer's values).
    func filled(_ key: Int) {
        let slot = slots[key]!
        filledBy[slot.projection] = slot.layer
    }

    /// dm (out) += Σ_rows dy ⊙ z / ‖W + s·B·A‖; returns mns ⊙ dy (rows, out), the branch's output gradient.
    func backward(_ key: Int, dy: UnsafePointer<Float>, rows: Int) -> UnsafePointer<Float> {
        let slot = slots[key]!
        precondition(savesEveryLayer || filledBy[slot.projection] == slot.layer,
                     "DoRA's saved \(slot.projection) product is shared across layers and holds layer \(filledBy[slot.projection] ?? -1)'s, not \(slot.layer)'s: a workspace without recompute must keep every layer (reserve(for:))")
        let out = slot.outFeatures
        columnSums.zero()
        Vector.accumulateColumnDots(dy, slot.product.pointer, rows: rows, cols: out, into: columnSums.pointer)
        let dm = arena.gradient(slot.magnitude)
        for o in 0..<out { dm[o] += columnSums[o] * slot.inverseNorm[o] }
        return UnsafePointer(scaledGradient.pointer)
    }
}
