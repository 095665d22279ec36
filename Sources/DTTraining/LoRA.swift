// LoRA (Hu et al. 2021) beside the frozen projections, PEFT's conventions: y = W x + s · B A dropout(x),
// s = α / r (α / √r with rsLoRA), A (r, in) kaiming-uniform(a = √5), B (out, r) zero. With `useDoRA` (PEFT's
// use_dora) each projection also has a magnitude vector that scales its output per feature (DoRA.swift).
import DTFormats
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

    /// Refuses targets that split a fused module (Phi-3's qkv_proj, gate_up_proj): PEFT adapts such a module as one.
    public func checkTargets(_ config: LlamaConfig) throws {
        for module in TensorNames.FusedModule.allCases where config.architecture.fusedProjections {
            let chosen = module.parts.filter(targets.contains)
            guard chosen.isEmpty || chosen.count == module.parts.count else {
                throw CommandError("lora_targets: \(config.architecture.name) stores \(module.parts.map(\.rawValue).joined(separator: ", ")) as one tensor (\(module.rawValue)), so LoRA adapts them together, as PEFT does: list all of them or none (found \(chosen.map(\.rawValue).joined(separator: ", ")))")
            }
        }
    }
}

public final class LoRAAdapter: ModelAdapter {
    public let options: LoRAOptions
    public let arena: ParameterArena
    struct Slot {
        /// A (r, in) and B (out, r); in a fused module (Phi-3's qkv_proj) A is the module's, shared by its parts,
        /// and B this part's rows of the module's B (DoRA's m likewise).
        let a: ParameterArena.Entry, b: ParameterArena.Entry, magnitude: ParameterArena.Entry?
        let inFeatures: Int, outFeatures: Int
        var saved: FloatBuffer   // u = dropout(x) · Aᵀ  (rows, r), kept for backward
        let tag: UInt64
        /// A fused module's later part (k, v; up): its A, input and dropout mask are the first part's, which the
        /// model runs just before on the same x, so it reuses that part's u (`saved` is the same buffer).
        let reusesFirstPart: Bool
    }
    private var slots: [Int: Slot] = [:]   // key: layer · 8 + projection index
    // Row scratch, sized by `reserve(for:)` from the workspace the model runs (rows = its capacity).
    private var reservedRows = 0
    private let maxIn: Int
    private var scratchInput = FloatBuffer(count: 0)   // (rows, max in) dropout(x)
    private var scratchU = FloatBuffer(count: 0)       // (rows, r)
    /// DoRA's magnitudes, norms and saved products (options.useDoRA); nil for plain LoRA.
    let dora: DoRAMagnitudes?
    /// Per-row keys (global sample index, position) that seed dropout, set by the trainer per micro-batch.
    public var rowKeys: [UInt64] = []
    public var dropoutSalt: UInt64 = 0
    public var training = false

    public static func key(_ layer: Int, _ p: TensorNames.Projection) -> Int {
        layer * 8 + TensorNames.Projection.allCases.firstIndex(of: p)!
    }

    /// PEFT's module of projection p: itself, or with `fused` (Architecture.fusedProjections) its fused tensor's.
    public static func modulePath(_ p: TensorNames.Projection, fused: Bool) -> String {
        fused ? TensorNames.FusedModule.of(p)?.modulePath ?? p.modulePath : p.modulePath
    }

    public static func tensorName(_ layer: Int, _ p: TensorNames.Projection, _ ab: String, fused: Bool = false) -> String {
        "base_model.model.model.layers.\(layer).\(modulePath(p, fused: fused)).lora_\(ab).weight"
    }

    /// DoRA's magnitude vector (out) as PEFT saves it (in the model: `lora_magnitude_vector.default.weight`).
    public static func magnitudeName(_ layer: Int, _ p: TensorNames.Projection, fused: Bool = false) -> String {
        "base_model.model.model.layers.\(layer).\(modulePath(p, fused: fused)).lora_magnitude_vector"
    }

    /// Whether the modules are fused tensors' (the model's Architecture.fusedProjections).
    public let fused: Bool

    /// Adapter tensors for `model` in a new arena: A initialised from `seed` and B zero, or both (and DoRA's
    /// magnitudes, if it has them) from `initial`. DoRA's magnitudes start at ‖W + s·B·A‖ otherwise.
    /// Row-sized scratch comes later, from the workspace it runs with (`reserve(for:)`).
    public init(model: LlamaModel, options: LoRAOptions, seed: UInt64, initial: LoRAWeights? = nil) {
        self.options = options
        let c = model.config
        fused = c.architecture.fusedProjections
        // One A and B (and DoRA's m) per module: a projection, or a fused tensor whose parts are all targets.
        var specs: [(String, [Int])] = []
        var dims: [(Int, TensorNames.Projection, Int, Int)] = []
        for l in 0..<c.layers {
            for p in TensorNames.Projection.allCases where options.targets.contains(p) {
                let w = model.layers[l].projections[p]!
                dims.append((l, p, w.cols, w.rows))
                let rows = c.fusedRows(p)
                guard rows.map({ $0.start == 0 }) ?? true else { continue }   // a later part of a fused module
                precondition(rows.map { $0.module.parts.allSatisfy(options.targets.contains) } ?? true,
                             "a fused module's parts are targets together (makeAdapter checks)")
                let out = rows?.total ?? w.rows
                specs.append((Self.tensorName(l, p, "A", fused: fused), [options.rank, w.cols]))
                specs.append((Self.tensorName(l, p, "B", fused: fused), [out, options.rank]))
                if options.useDoRA { specs.append((Self.magnitudeName(l, p, fused: fused), [out])) }
            }
        }
        arena = ParameterArena(specs.map { (name: $0.0, shape: $0.1) })
        var maxIn = 0
        for (l, p, inF, outF) in dims {
            let start = c.fusedRows(p)?.start ?? 0, r = options.rank
            let b = arena.entry(Self.tensorName(l, p, "B", fused: fused))!
            let m = options.useDoRA ? arena.entry(Self.magnitudeName(l, p, fused: fused))! : nil
            // Dropout masks come from the module's first part: a fused module drops the same inputs for all parts, as PEFT.
            let maskKey = c.fusedRows(p).map { Self.key(l, $0.module.parts[0]) } ?? Self.key(l, p)
            slots[Self.key(l, p)] = Slot(a: arena.entry(Self.tensorName(l, p, "A", fused: fused))!,
                                         b: .init(name: b.name, shape: [outF, r], offset: b.offset + start * r),
                                         magnitude: m.map { .init(name: $0.name, shape: [outF], offset: $0.offset + start) },
                                         inFeatures: inF, outFeatures: outF, saved: FloatBuffer(count: 0),
                                         tag: UInt64(maskKey) &* 0x9E37_79B9_7F4A_7C15, reusesFirstPart: maskKey != Self.key(l, p))
            maxIn = max(maxIn, inF)
        }
        self.maxIn = maxIn
        var rng = SplitMix64(seed: seed)
        for (l, p, inF, outF) in dims {
            let slot = slots[Self.key(l, p)]!, a = arena.value(slot.a)
            if let pair = initial?.pair(l, p) {
                precondition(pair.a.count == options.rank * inF && pair.b.count == outF * options.rank, "initial \(p) of another rank")
                a.update(from: pair.a, count: options.rank * inF)   // a fused module's parts carry the same A
                arena.value(slot.b).update(from: pair.b, count: pair.b.count)
                continue
            }
            guard (c.fusedRows(p)?.start ?? 0) == 0 else { continue }   // the module's A is drawn once
            let bound = 1 / Float(inF).squareRoot()   // kaiming_uniform(a=√5): sqrt(6 / ((1 + 5) · fan_in))
            for i in 0..<(options.rank * inF) {
                a[i] = (Float(Double(rng.next() >> 11) / Double(1 << 53)) * 2 - 1) * bound
            }
        }
        let built = slots
        dora = options.useDoRA
            ? DoRAMagnitudes(model: model, arena: arena, options: options,
                             targets: dims.map { d in
                                 let s = built[Self.key(d.0, d.1)]!
                                 return (key: Self.key(d.0, d.1), layer: d.0, p: d.1, a: s.a, b: s.b, magnitude: s.magnitude!)
                             },
                             magnitudes: initial.flatMap { $0.magnitudes.isEmpty ? nil : $0.magnitudes })
            : nil
    }

    /// A, B (and DoRA's m) of projection p in `layer` as this adapter holds them (B and m: p's rows of a fused
    /// module's), or nil when p is not adapted.
    public func tensors(_ layer: Int, _ p: TensorNames.Projection) -> (a: [Float], b: [Float], magnitude: [Float]?)? {
        guard let s = slots[Self.key(layer, p)] else { return nil }
        func values(_ e: ParameterArena.Entry) -> [Float] { Array(UnsafeBufferPointer(start: arena.value(e), count: e.count)) }
        return (values(s.a), values(s.b), s.magnitude.map(values))
    }

    /// Sizes the row scratch for `workspace`: each projection's saved u, the dropout and du scratch, and DoRA's
    /// saved frozen products (one per layer when the workspace keeps every layer for backward). Grows only.
    public func reserve(for workspace: ForwardWorkspace) {
        let rows = workspace.maxRows
        if rows > reservedRows {
            reservedRows = rows
            for k in slots.keys where !slots[k]!.reusesFirstPart { slots[k]!.saved = FloatBuffer(count: rows * options.rank) }
            for (k, s) in slots where s.reusesFirstPart {   // a fused module's parts share the first part's u
                slots[k]!.saved = slots.first { !$0.value.reusesFirstPart && $0.value.a == s.a }!.value.saved
            }
            scratchInput = FloatBuffer(count: options.dropout > 0 ? rows * maxIn : 0)
            scratchU = FloatBuffer(count: rows * options.rank)
        }
        dora?.reserve(rows: rows, everyLayer: workspace.keepsEveryLayer)
    }

    /// Bytes DoRA holds now beyond LoRA's (its saved frozen products, as reserved); 0 for plain LoRA.
    public var doraBytes: Int { dora?.savedBytes ?? 0 }

    /// Bytes DoRA keeps beyond LoRA's for a workspace of `rows` rows (its saved frozen products, one set per
    /// layer when `everyLayer`); 0 without DoRA. What `reserve(for:)` allocates, for memory estimates beforehand.
    public static func doraBytes(model: LlamaModel, options: LoRAOptions, rows: Int, everyLayer: Bool) -> Double {
        options.useDoRA ? DoRAMagnitudes.savedBytes(model: model, targets: options.targets, rows: rows, everyLayer: everyLayer) : 0
    }

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
        precondition(rows <= reservedRows, "LoRA forward over \(rows) rows, but reserve(for:) made room for \(reservedRows)")
        // u (rows, r) = xd (rows, in) · Aᵀ (a fused module's first part's u for its later parts);  y (rows, out) += scale · u · Bᵀ
        // (DoRA: y is its saved product z = x · Wᵀ, which the choke point then scales by m / ‖W + s·B·A‖ into the output)
        if !s.reusesFirstPart {
            BLAS.linear(dropped(x, s, rows: rows), arena.value(s.a), s.saved.pointer, rows: rows, inFeatures: s.inFeatures, outFeatures: r)
        }
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
