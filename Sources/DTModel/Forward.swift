// The Llama forward pass: embeddings → L × (RMSNorm, attention, residual, RMSNorm, SwiGLU MLP, residual)
// → final RMSNorm → LM head. Every projection goes through `project`, which also applies the adapter.
// Family differences come from `config.architecture` (q/k/v bias, per-head QK-norm, per-layer sliding window
// with its own RoPE base, score scale, sandwich norms, GeGLU, scaled embeddings).
// Letters: B batch, T tokens per sequence, N = B·T rows, C hidden, H/K query/kv heads, D head dim, I MLP width, V vocab.
import DTKernels
import Foundation

extension LlamaModel {
    /// y (rows, out) = x (rows, in) · Wᵀ (+ y when `accumulate`) + adapter(x). The one entry point for projections.
    /// With an adapter's frozen-output scale (DoRA): y (+)= scale ⊙ (x · Wᵀ + adapter(x)), built in the adapter's buffer.
    @inline(__always)
    func project(_ layer: Int, _ p: TensorNames.Projection, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                 rows: Int, accumulate: Bool = false, sameInputAsPrevious: Bool = false, ws: ForwardWorkspace, adapter: ModelAdapter?) {
        let w = layers[layer].projections[p]!
        let adapted = adapter?.adapts(layer: layer, p) == true
        let scale = adapted ? adapter!.frozenOutputScale(layer: layer, p, weight: w, rows: rows, scratch: ws.productScratch) : nil
        let out = scale?.product ?? y
        Profile.measure("forward \(p)") {
            w.forward(x, rows: rows, into: out, accumulate: accumulate && scale == nil, inputAlreadyRounded: sameInputAsPrevious,
                      scratch: ws.productScratch)
        }
        if adapted { Profile.measure("forward adapter") { adapter!.forward(layer: layer, p, weight: w, x: x, y: out, rows: rows) } }
        if let scale {
            Profile.measure("forward adapter") {
                Vector.scaleColumns(scale.product, by: scale.scale, rows: rows, cols: w.rows, into: y, accumulate: accumulate)
            }
        }
    }

    /// One layer: x (N, C) in the residual stream is updated in place; activations go to `a`.
    func forwardLayer(_ l: Int, _ ws: ForwardWorkspace, _ a: LayerActivations, x: UnsafeMutablePointer<Float>,
                      cache: KVCache?, adapter: ModelAdapter?) {
        let c = config, w = layers[l]
        let T = ws.length, N = ws.rows
        let (C, I, HD, KD) = (c.hiddenSize, c.intermediateSize, c.heads * c.headDim, c.kvHeads * c.headDim)
        let start = cache?.length ?? 0
        Profile.measure("forward norm") {
            RMSNorm.forward(x, w.attentionNorm, a.norm1.pointer, rstd: a.rstd1.pointer, rows: N, channels: C, eps: c.rmsNormEps)
        }
        let kOut = cache.map { $0.keys[l].pointer + start * KD } ?? a.k.pointer
        let vOut = cache.map { $0.values[l].pointer + start * KD } ?? a.v.pointer
        // With QK-norm, q and k are projected into qRaw/kRaw and normed per head (D channels) into q/kOut.
        let qNorm = w.queryNorm, kNorm = w.keyNorm
        let qProjected = qNorm == nil ? a.q.pointer : a.qRaw.pointer, kProjected = kNorm == nil ? kOut : a.kRaw.pointer
        project(l, .q, a.norm1.pointer, qProjected, rows: N, ws: ws, adapter: adapter)
        project(l, .k, a.norm1.pointer, kProjected, rows: N, sameInputAsPrevious: true, ws: ws, adapter: adapter)
        project(l, .v, a.norm1.pointer, vOut, rows: N, sameInputAsPrevious: true, ws: ws, adapter: adapter)
        if let b = w.biases[.q] { Vector.addBias(qProjected, b, rows: N, cols: HD) }
        if let b = w.biases[.k] { Vector.addBias(kProjected, b, rows: N, cols: KD) }
        if let b = w.biases[.v] { Vector.addBias(vOut, b, rows: N, cols: KD) }
        if let qNorm, let kNorm {
            Profile.measure("forward norm") {
                RMSNorm.forward(qProjected, qNorm, a.q.pointer, rstd: a.rstdQ.pointer, rows: N * c.heads, channels: c.headDim, eps: c.rmsNormEps)
                RMSNorm.forward(kProjected, kNorm, kOut, rstd: a.rstdK.pointer, rows: N * c.kvHeads, channels: c.headDim, eps: c.rmsNormEps)
            }
        }
        let window = c.architecture.window(layer: l)
        let table = ropeTable(window: window, ws)
        Profile.measure("forward rope") {
            table.apply(a.q.pointer, rows: N, heads: c.heads, positions: ws.positions.baseAddress!)
            table.apply(kOut, rows: N, heads: c.kvHeads, positions: ws.positions.baseAddress!)
        }
        let shape = AttentionShape(batch: ws.batch, queryLength: T, keyLength: start + T, heads: c.heads, kvHeads: c.kvHeads,
                                   headDim: c.headDim, window: window, scale: c.architecture.queryScale.map { 1 / $0.squareRoot() },
                                   softcap: c.architecture.attentionSoftcap)
        Profile.measure("forward attention") {
            Attention.forward(shape, q: a.q.pointer,
                              k: cache.map { UnsafePointer($0.keys[l].pointer) } ?? UnsafePointer(a.k.pointer),
                              v: cache.map { UnsafePointer($0.values[l].pointer) } ?? UnsafePointer(a.v.pointer),
                              keyMask: cache == nil ? UnsafePointer(ws.mask.pointer) : nil,
                              segmentStarts: ws.segmentStarts.map { UnsafePointer($0.baseAddress!) }, compute: compute,
                              logSumExp: cache == nil ? a.logSumExp.pointer : nil, out: a.attention.pointer)
        }
        addOutput(l, .o, a.attention.pointer, x: x, norm: w.postAttentionNorm, out: a.attentionOut, rstd: a.rstdPostAttention, a, ws, adapter)
        Profile.measure("forward norm") {
            a.middle.pointer.update(from: x, count: N * C)
            RMSNorm.forward(x, w.mlpNorm, a.norm2.pointer, rstd: a.rstd2.pointer, rows: N, channels: C, eps: c.rmsNormEps)
        }
        project(l, .gate, a.norm2.pointer, a.gate.pointer, rows: N, ws: ws, adapter: adapter)
        project(l, .up, a.norm2.pointer, a.up.pointer, rows: N, sameInputAsPrevious: true, ws: ws, adapter: adapter)
        Profile.measure("forward swiglu") {
            switch c.architecture.activation {
            case .swiGLU: SwiGLU.forward(gate: a.gate.pointer, up: a.up.pointer, a.hidden.pointer, count: N * I)
            case .geGLUTanh: GeGLU.forward(gate: a.gate.pointer, up: a.up.pointer, a.hidden.pointer, count: N * I)
            }
        }
        addOutput(l, .down, a.hidden.pointer, x: x, norm: w.postMLPNorm, out: a.mlpOut, rstd: a.rstdPostMLP, a, ws, adapter)
    }

    /// x (N, C) += p(input), or with a sandwich norm x += RMSNorm(p(input)) with p's output kept in `out` (N, C).
    @inline(__always)
    func addOutput(_ l: Int, _ p: TensorNames.Projection, _ input: UnsafePointer<Float>, x: UnsafeMutablePointer<Float>, norm: [Float]?,
                   out: FloatBuffer, rstd: FloatBuffer, _ a: LayerActivations, _ ws: ForwardWorkspace, _ adapter: ModelAdapter?) {
        let N = ws.rows, C = config.hiddenSize
        guard let norm else { return project(l, p, input, x, rows: N, accumulate: true, ws: ws, adapter: adapter) }
        project(l, p, input, out.pointer, rows: N, ws: ws, adapter: adapter)
        Profile.measure("forward norm") {
            RMSNorm.forward(out.pointer, norm, a.normedOut.pointer, rstd: rstd.pointer, rows: N, channels: C, eps: config.rmsNormEps)
            let normed = a.normedOut.pointer
            for i in 0..<(N * C) { x[i] += normed[i] }
        }
    }

    /// Runs all layers over the workspace's tokens and applies the final norm. With a KV cache (B = 1) the
    /// tokens continue the cached sequence at position cache.length and their keys/values are appended.
    /// `upToLayer` stops early (the stream then holds that layer's input; used by the probe).
    public func forwardLayers(_ ws: ForwardWorkspace, cache: KVCache? = nil, adapter: ModelAdapter? = nil, upToLayer: Int? = nil) {
        let c = config
        let (T, N, C) = (ws.length, ws.rows, c.hiddenSize)
        let start = cache?.length ?? 0
        if let cache { precondition(ws.batch == 1 && start + T <= cache.capacity, "KV cache overflow") }
        adapter?.reserve(for: ws)
        if ws.segmentStarts == nil { for i in 0..<N { ws.positions[i] = Int32(start + i % T) } }   // packed: set at load
        // LongRoPE picks its factors per pass by the largest position, as transformers does (recompute keeps the choice).
        ws.reachesLongContext = config.longRope.map { $0.usesLong(maxPosition: Int(ws.positions.prefix(N).max() ?? 0)) } ?? false
        let x = ws.stream.pointer
        embedding.lookup(UnsafePointer(ws.tokens.baseAddress!), count: N, into: x, scratch: ws.productScratch)
        if c.architecture.scalesEmbeddings {   // Gemma: × √C (virtual tokens, written next, are not scaled, as in HF)
            let scale = Float(C).squareRoot()
            for i in 0..<(N * C) { x[i] *= scale }
        }
        if start == 0 { adapter?.embedVirtualTokens(stream: x, batch: ws.batch, length: T) }
        for l in 0..<(upToLayer ?? c.layers) {
            if !ws.layerInputs.isEmpty { ws.layerInputs[l].pointer.update(from: x, count: N * C) }
            forwardLayer(l, ws, ws.activations(l), x: x, cache: cache, adapter: adapter)
        }
        cache?.length += T
        RMSNorm.forward(x, finalNorm, ws.finalNorm.pointer, rstd: ws.finalRstd.pointer, rows: N, channels: C, eps: c.rmsNormEps)
    }

    /// logits (rows, V) for `rows` consecutive rows of the final normed stream starting at `firstRow`.
    public func computeLogits(_ ws: ForwardWorkspace, firstRow: Int = 0, rows: Int, into out: UnsafeMutablePointer<Float>) {
        let x = UnsafePointer(ws.finalNorm.pointer + firstRow * config.hiddenSize)
        Profile.measure("forward lm head") {
            (lmHead ?? embedding).forward(x, rows: rows, into: out, ldo: config.vocabSize, scratch: ws.productScratch)
            capLogits(out, rows: rows)
        }
    }

    /// Final-logit soft-capping (Gemma 2): logits (rows, V) ← cap · tanh(logits / cap); its backward is in `crossEntropy`.
    func capLogits(_ logits: UnsafeMutablePointer<Float>, rows: Int) {
        guard let cap = config.architecture.finalLogitSoftcap else { return }
        let V = config.vocabSize
        Parallel.ranges(rows, minimumPerWorker: 1) { _, range in
            for r in range { SoftCap.forward(logits + r * V, count: V, cap: cap) }
        }
    }

    /// Full forward to logits in `ws.logits`: (N, V), or (targets, V) for the rows chosen by `ws.selectTargets`.
    public func forward(_ ws: ForwardWorkspace, adapter: ModelAdapter? = nil) {
        forwardLayers(ws, adapter: adapter)
        guard let targets = ws.targetCount else { return computeLogits(ws, rows: ws.rows, into: ws.logits.pointer) }
        let C = config.hiddenSize
        for i in 0..<targets {   // targetNorm (targets, C) = the selected rows of finalNorm
            (ws.targetNorm.pointer + i * C).update(from: ws.finalNorm.pointer + Int(ws.targetRows[i]) * C, count: C)
        }
        Profile.measure("forward lm head") {
            (lmHead ?? embedding).forward(ws.targetNorm.pointer, rows: targets, into: ws.logits.pointer, ldo: config.vocabSize,
                                          scratch: ws.productScratch)
            capLogits(ws.logits.pointer, rows: targets)
        }
    }
}

/// Keys and values of past positions for one sequence, per layer: (capacity, K·D) each.
public final class KVCache {
    public let capacity: Int
    public var length = 0
    public let keys: [FloatBuffer], values: [FloatBuffer]

    public init(model: LlamaModel, capacity: Int) {
        let c = model.config
        self.capacity = capacity
        keys = (0..<c.layers).map { _ in FloatBuffer(count: capacity * c.kvHeads * c.headDim) }
        values = (0..<c.layers).map { _ in FloatBuffer(count: capacity * c.kvHeads * c.headDim) }
    }
}
