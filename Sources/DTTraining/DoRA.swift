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
        let product: FloatBuffer             // (rows, out) z; one per projection kind when not saved per layer
        var normsVersion: UInt64?            // arena version the norms were computed at
        init(layer: Int, projection: TensorNames.Projection, a: ParameterArena.Entry, b: ParameterArena.Entry,
             magnitude: ParameterArena.Entry, inFeatures: Int, outFeatures: Int, weightSquares: [Double], product: FloatBuffer) {
            self.layer = layer; self.projection = projection; self.a = a; self.b = b; self.magnitude = magnitude
            self.inFeatures = inFeatures; self.outFeatures = outFeatures; self.weightSquares = weightSquares
            inverseNorm = FloatBuffer(count: outFeatures); scale = FloatBuffer(count: outFeatures); self.product = product
        }
    }

    let arena: ParameterArena
    let rank: Int, scaleFactor: Float, maxRows: Int
    private(set) var slots: [Int: Slot] = [:]            // key: LoRAAdapter.key(layer, projection)
    /// Whether every layer keeps its z until backward (training without recompute); else the layers share one z
    /// per projection kind, refilled by each layer's forward (recompute reruns it just before its backward).
    let savesEveryLayer: Bool
    private var filledBy: [TensorNames.Projection: Int] = [:]   // the layer whose z a shared buffer holds
    private let scaledGradient: FloatBuffer   // (rows, max out) mns ⊙ dy, written by the choke point in backward
    private let columnSums: FloatBuffer    // (max out)
    private let aTimesW: FloatBuffer       // (r, max out) A · Wᵀ
    private let gram: FloatBuffer          // (r, r) A · Aᵀ
    private var productScratch: ProductScratch?   // the model's product scratch with its own input buffer
    private let maxIn: Int

    /// m and the norms of every adapted projection of `model`; A and B must hold their values. m is set to
    /// ‖W + s·B·A‖ (PEFT's initialisation) unless `magnitudes` gives it (key → (out) values).
    init(model: LlamaModel, arena: ParameterArena, options: LoRAOptions, targets: [(key: Int, layer: Int, p: TensorNames.Projection)],
         maxRows: Int, savesEveryLayer: Bool, magnitudes: [Int: [Float]]?) {
        self.arena = arena
        rank = options.rank; scaleFactor = options.scale; self.maxRows = maxRows; self.savesEveryLayer = savesEveryLayer
        var maxOut = 0, maxIn = 0, largest = 0
        for t in targets {
            let w = model.layers[t.layer].projections[t.p]!
            maxOut = max(maxOut, w.rows); maxIn = max(maxIn, w.cols)
            if w.densePointer == nil { largest = max(largest, w.rows * w.cols) }
        }
        self.maxIn = maxIn
        scaledGradient = FloatBuffer(count: maxRows * maxOut, zeroed: false)
        columnSums = FloatBuffer(count: maxOut)
        aTimesW = FloatBuffer(count: rank * maxOut)
        gram = FloatBuffer(count: rank * rank)
        var shared: [TensorNames.Projection: FloatBuffer] = [:]
        let dequantized = FloatBuffer(count: largest, zeroed: false)   // (out, in) W of a projection not held in fp32
        for t in targets {
            let w = model.layers[t.layer].projections[t.p]!
            let (out, inF) = (w.rows, w.cols)
            let product = savesEveryLayer ? FloatBuffer(count: maxRows * out, zeroed: false)
                : shared[t.p] ?? FloatBuffer(count: maxRows * out, zeroed: false)
            shared[t.p] = product
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
            let magnitude = arena.entry(LoRAAdapter.magnitudeName(t.layer, t.p))!
            let slot = Slot(layer: t.layer, projection: t.p, a: arena.entry(LoRAAdapter.tensorName(t.layer, t.p, "A"))!,
                            b: arena.entry(LoRAAdapter.tensorName(t.layer, t.p, "B"))!, magnitude: magnitude,
                            inFeatures: inF, outFeatures: out, weightSquares: squares, product: product)
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

    /// Bytes of the saved products z (what DoRA keeps for backward beyond LoRA).
    var savedBytes: Int {
        var seen = Set<ObjectIdentifier>(), total = 0
        for s in slots.values where seen.insert(ObjectIdentifier(s.product)).inserted { total += s.product.count * 4 }
        return total + scaledGradient.count * 4
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
        precondition(rows <= maxRows, "DoRA holds \(maxRows) rows, asked for \(rows)")
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
                     "DoRA's saved \(slot.projection) product is shared across layers and holds layer \(filledBy[slot.projection] ?? -1)'s, not \(slot.layer)'s: an adapter for a workspace without recompute needs savesEveryLayer")
        let out = slot.outFeatures
        columnSums.zero()
        Vector.accumulateColumnDots(dy, slot.product.pointer, rows: rows, cols: out, into: columnSums.pointer)
        let dm = arena.gradient(slot.magnitude)
        for o in 0..<out { dm[o] += columnSums[o] * slot.inverseNorm[o] }
        return UnsafePointer(scaledGradient.pointer)
    }
}
