// LoRA (Hu et al. 2021) beside the frozen projections, PEFT's conventions: y = W x + s · B A dropout(x),
// s = α / r (α / √r with rsLoRA), A (r, in) kaiming-uniform(a = √5), B (out, r) zero. With `useDoRA` (PEFT's
// use_dora) each projection also has a magnitude vector that scales its output per feature (DoRA.swift).
import DTKernels
import DTModel
import Foundation

public struct LoRAOptions: Equatable, Sendable {
    public var rank: Int = 8
    public var alpha: Float = 16
    public var dropout: Float = 0
    public var rsLoRA = false
    /// DoRA: a trainable magnitude m (out) per projection, y = m / ‖W + s·B·A‖ ⊙ (W x + s · B A dropout(x)).
    public var useDoRA = false
    public var targets: [TensorNames.Projection] = TensorNames.Projection.allCases
    public init() {}
    public var scale: Float { rsLoRA ? alpha / Float(rank).squareRoot() : alpha / Float(rank) }
}

public final class LoRAAdapter: ModelAdapter {
    public let options: LoRAOptions
    public let arena: ParameterArena
    struct Slot {
        let a: ParameterArena.Entry, b: ParameterArena.Entry
        let inFeatures: Int, outFeatures: Int
        let saved: FloatBuffer   // u = dropout(x) · Aᵀ  (rows, r), kept for backward
        let tag: UInt64
    }
    private var slots: [Int: Slot] = [:]   // key: layer · 8 + projection index
    private let scratchInput: FloatBuffer   // (rows, max in) dropout(x)
    private let scratchU: FloatBuffer       // (rows, r)
    /// DoRA's magnitudes, norms and saved products (options.useDoRA); nil for plain LoRA.
    let dora: DoRAMagnitudes?
    /// Per-row keys (global sample index, position) that seed dropout, set by the trainer per micro-batch.
    public var rowKeys: [UInt64] = []
    public var dropoutSalt: UInt64 = 0
    public var training = false

    public static func key(_ layer: Int, _ p: TensorNames.Projection) -> Int {
        layer * 8 + TensorNames.Projection.allCases.firstIndex(of: p)!
    }

    public static func tensorName(_ layer: Int, _ p: TensorNames.Projection, _ ab: String) -> String {
        "base_model.model.model.layers.\(layer).\(p.modulePath).lora_\(ab).weight"
    }

    /// DoRA's magnitude vector (out) as PEFT saves it (in the model: `lora_magnitude_vector.default.weight`).
    public static func magnitudeName(_ layer: Int, _ p: TensorNames.Projection) -> String {
        "base_model.model.model.layers.\(layer).\(p.modulePath).lora_magnitude_vector"
    }

    /// Adapter tensors for `model` in a new arena: A initialised from `seed` and B zero, or both (and DoRA's
    /// magnitudes, if it has them) from `initial`. DoRA's magnitudes start at ‖W + s·B·A‖ otherwise.
    /// `savesEveryLayer` (DoRA): keep each layer's frozen products for backward — a training workspace without
    /// recompute; else the layers share them (recompute, or inference).
    public init(model: LlamaModel, options: LoRAOptions, maxRows: Int, seed: UInt64, initial: LoRAWeights? = nil,
                savesEveryLayer: Bool = false) {
        self.options = options
        let c = model.config
        var specs: [(String, [Int])] = []
        var dims: [(Int, TensorNames.Projection, Int, Int)] = []
        for l in 0..<c.layers {
            for p in TensorNames.Projection.allCases where options.targets.contains(p) {
                let w = model.layers[l].projections[p]!
                specs.append((Self.tensorName(l, p, "A"), [options.rank, w.cols]))
                specs.append((Self.tensorName(l, p, "B"), [w.rows, options.rank]))
                if options.useDoRA { specs.append((Self.magnitudeName(l, p), [w.rows])) }
                dims.append((l, p, w.cols, w.rows))
            }
        }
        arena = ParameterArena(specs.map { (name: $0.0, shape: $0.1) })
        var maxIn = 0
        for (l, p, inF, outF) in dims {
            slots[Self.key(l, p)] = Slot(a: arena.entry(Self.tensorName(l, p, "A"))!, b: arena.entry(Self.tensorName(l, p, "B"))!,
                                         inFeatures: inF, outFeatures: outF, saved: FloatBuffer(count: maxRows * options.rank),
                                         tag: UInt64(Self.key(l, p)) &* 0x9E37_79B9_7F4A_7C15)
            maxIn = max(maxIn, inF)
        }
        scratchInput = FloatBuffer(count: options.dropout > 0 ? maxRows * maxIn : 0)
        scratchU = FloatBuffer(count: maxRows * options.rank)
        var rng = SplitMix64(seed: seed)
        for (l, p, inF, outF) in dims {
            let a = arena.value(slots[Self.key(l, p)]!.a)
            if let pair = initial?.pair(l, p) {
                precondition(pair.a.count == options.rank * inF && pair.b.count == outF * options.rank, "initial \(p) of another rank")
                a.update(from: pair.a, count: options.rank * inF)
                arena.value(slots[Self.key(l, p)]!.b).update(from: pair.b, count: pair.b.count)
                continue
            }
            let bound = 1 / Float(inF).squareRoot()   // kaiming_uniform(a=√5): sqrt(6 / ((1 + 5) · fan_in))
            for i in 0..<(options.rank * inF) {
                a[i] = (Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1) * bound
            }
        }
        dora = options.useDoRA
            ? DoRAMagnitudes(model: model, arena: arena, options: options, targets: dims.map { (key: Self.key($0.0, $0.1), layer: $0.0, p: $0.1) },
                             maxRows: maxRows, savesEveryLayer: savesEveryLayer,
                             magnitudes: initial.flatMap { $0.magnitudes.isEmpty ? nil : $0.magnitudes })
            : nil
    }

    /// Bytes DoRA keeps beyond LoRA's (its saved frozen products); 0 for plain LoRA.
    public var doraBytes: Int { dora?.savedBytes ?? 0 }

    public func adapts(layer: Int, _ p: TensorNames.Projection) -> Bool { slots[Self.key(layer, p)] != nil }

    public func frozenOutputScale(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, rows: Int,
                                  scratch: ProductScratch) -> FrozenOutputScale? {
        dora?.outputScale(Self.key(layer, p), weight: weight, rows: rows, scratch: scratch)
    }

    /// dropout(x) into the scratch, deterministic in (salt, slot, row key, column) so any world size
    /// draws the same mask for the same sample.
    private func dropped(_ x: UnsafePointer<Float>, _ s: Slot, rows: Int) -> UnsafePointer<Float> {
        guard training, options.dropout > 0 else { return x }
        let keep = 1 - options.dropout, inv = 1 / keep
        let threshold = UInt64(Double(options.dropout) * Double(UInt64.max >> 11))
        let out = scratchInput.pointer
        for r in 0..<rows {
            var h = SplitMix64(seed: dropoutSalt ^ s.tag ^ (r < rowKeys.count ? rowKeys[r] : UInt64(r)))
            for j in 0..<s.inFeatures {
                out[r * s.inFeatures + j] = (h.next() >> 11) < threshold ? 0 : x[r * s.inFeatures + j] * inv
            }
        }
        return UnsafePointer(out)
    }

    public func forward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                        y: UnsafeMutablePointer<Float>, rows: Int) {
        let s = slots[Self.key(layer, p)]!
        let r = options.rank
        let xd = dropped(x, s, rows: rows)
        // u (rows, r) = xd (rows, in) · Aᵀ;  y (rows, out) += scale · u · Bᵀ
        // (DoRA: y is its saved product z = x · Wᵀ, which the choke point then scales by m / ‖W + s·B·A‖ into the output)
        BLAS.linear(xd, arena.value(s.a), s.saved.pointer, rows: rows, inFeatures: s.inFeatures, outFeatures: r)
        BLAS.gemm(.noTrans, .trans, m: rows, n: s.outFeatures, k: r, alpha: options.scale, a: s.saved.pointer, lda: r,
                  b: arena.value(s.b), ldb: r, beta: 1, c: y, ldc: s.outFeatures)
        dora?.filled(Self.key(layer, p))
    }

    public func backward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                         dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, rows: Int) {
        let s = slots[Self.key(layer, p)]!
        let r = options.rank, scale = options.scale
        // DoRA: dm from dy, and the branch continues with m / ‖W + s·B·A‖ ⊙ dy.
        let g = dora?.backward(Self.key(layer, p), dy: dy, rows: rows) ?? dy
        // dB (out, r) += scale · gᵀ (out, rows) · u (rows, r)
        BLAS.gemm(.trans, .noTrans, m: s.outFeatures, n: r, k: rows, alpha: scale, a: g, lda: s.outFeatures,
                  b: s.saved.pointer, ldb: r, beta: 1, c: arena.gradient(s.b), ldc: r)
        // du (rows, r) = scale · g (rows, out) · B (out, r)
        BLAS.gemm(.noTrans, .noTrans, m: rows, n: r, k: s.outFeatures, alpha: scale, a: g, lda: s.outFeatures,
                  b: arena.value(s.b), ldb: r, c: scratchU.pointer, ldc: r)
        // dA (r, in) += duᵀ (r, rows) · xd (rows, in)
        let xd = dropped(x, s, rows: rows)
        BLAS.gemm(.trans, .noTrans, m: r, n: s.inFeatures, k: rows, a: scratchU.pointer, lda: r,
                  b: xd, ldb: s.inFeatures, beta: 1, c: arena.gradient(s.a), ldc: s.inFeatures)
        // dx (rows, in) += du · A, through the dropout mask
        if training && options.dropout > 0 {
            let tmp = scratchInput.pointer
            BLAS.gemm(.noTrans, .noTrans, m: rows, n: s.inFeatures, k: r, a: scratchU.pointer, lda: r,
                      b: arena.value(s.a), ldb: s.inFeatures, c: tmp, ldc: s.inFeatures)
            let inv = 1 / (1 - options.dropout)
            let threshold = UInt64(Double(options.dropout) * Double(UInt64.max >> 11))
            for row in 0..<rows {
                var h = SplitMix64(seed: dropoutSalt ^ s.tag ^ (row < rowKeys.count ? rowKeys[row] : UInt64(row)))
                for j in 0..<s.inFeatures where (h.next() >> 11) >= threshold {
                    dx[row * s.inFeatures + j] += tmp[row * s.inFeatures + j] * inv
                }
            }
        } else {
            BLAS.gemm(.noTrans, .noTrans, m: rows, n: s.inFeatures, k: r, a: scratchU.pointer, lda: r,
                      b: arena.value(s.a), ldb: s.inFeatures, beta: 1, c: dx, ldc: s.inFeatures)
        }
    }
}
