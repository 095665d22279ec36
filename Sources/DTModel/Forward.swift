// The Llama forward pass: embeddings → L × (RMSNorm, attention, residual, RMSNorm, SwiGLU MLP, residual)
// → final RMSNorm → LM head. Activations a backward pass needs are kept per layer in `LayerActivations`.
// Letters: B batch, T tokens per sequence, N = B·T rows, C hidden, H/K query/kv heads, D head dim, I MLP width, V vocab.
import DTKernels
import Foundation

public final class LayerActivations {
    public let input: FloatBuffer          // (N, C) residual stream entering the layer
    public let norm1: FloatBuffer          // (N, C)
    public let rstd1: FloatBuffer          // (N)
    public let q: FloatBuffer              // (N, H·D) after RoPE
    public let k: FloatBuffer              // (N, K·D) after RoPE
    public let v: FloatBuffer              // (N, K·D)
    public let probabilities: FloatBuffer  // (B, H, T, T)
    public let attention: FloatBuffer      // (N, H·D) before o_proj
    public let middle: FloatBuffer         // (N, C) residual stream after attention
    public let norm2: FloatBuffer          // (N, C)
    public let rstd2: FloatBuffer          // (N)
    public let gate: FloatBuffer           // (N, I)
    public let up: FloatBuffer             // (N, I)
    public let hidden: FloatBuffer         // (N, I) silu(gate)·up

    init(_ c: LlamaConfig, batch: Int, length: Int) {
        let n = batch * length
        input = FloatBuffer(count: n * c.hiddenSize); norm1 = FloatBuffer(count: n * c.hiddenSize); rstd1 = FloatBuffer(count: n)
        q = FloatBuffer(count: n * c.heads * c.headDim)
        k = FloatBuffer(count: n * c.kvHeads * c.headDim); v = FloatBuffer(count: n * c.kvHeads * c.headDim)
        probabilities = FloatBuffer(count: batch * c.heads * length * length)
        attention = FloatBuffer(count: n * c.heads * c.headDim)
        middle = FloatBuffer(count: n * c.hiddenSize); norm2 = FloatBuffer(count: n * c.hiddenSize); rstd2 = FloatBuffer(count: n)
        gate = FloatBuffer(count: n * c.intermediateSize); up = FloatBuffer(count: n * c.intermediateSize)
        hidden = FloatBuffer(count: n * c.intermediateSize)
    }
}

/// Buffers for one forward pass of shape (B, T), allocated once and reused across steps.
public final class ForwardWorkspace {
    public let batch: Int, length: Int
    public var rows: Int { batch * length }
    public let tokens: UnsafeMutableBufferPointer<Int32>      // (N)
    public let positions: UnsafeMutableBufferPointer<Int32>   // (N)
    public let mask: FloatBuffer                              // (B, T) 1 = real token, 0 = padding
    public let layers: [LayerActivations]                     // L entries when kept for backward, else 1
    public let stream: FloatBuffer                            // (N, C) residual stream
    public let finalNorm: FloatBuffer                         // (N, C)
    public let finalRstd: FloatBuffer                         // (N)
    public let logits: FloatBuffer                            // (N, V), or empty when logits are not wanted
    public let weightScratch: FloatBuffer                     // largest projection, for per-layer dequantization

    public init(model: LlamaModel, batch: Int, length: Int, keepActivations: Bool, withLogits: Bool = true) {
        let c = model.config
        self.batch = batch; self.length = length
        let n = batch * length
        tokens = .allocate(capacity: n); tokens.initialize(repeating: 0)
        positions = .allocate(capacity: n)
        for i in 0..<n { positions[i] = Int32(i % length) }
        mask = FloatBuffer(count: n)
        layers = (0..<(keepActivations ? c.layers : 1)).map { _ in LayerActivations(c, batch: batch, length: length) }
        stream = FloatBuffer(count: n * c.hiddenSize)
        finalNorm = FloatBuffer(count: n * c.hiddenSize)
        finalRstd = FloatBuffer(count: n)
        logits = FloatBuffer(count: withLogits ? n * c.vocabSize : 0)
        weightScratch = FloatBuffer(count: model.precision == .fp32 ? 0 : model.largestProjection)
    }

    deinit { tokens.deallocate(); positions.deallocate() }

    public func activations(_ layer: Int) -> LayerActivations { layers[layers.count == 1 ? 0 : layer] }

    /// Loads B sequences (right-padded to T with `padToken`) and their mask.
    public func load(_ sequences: [[Int32]], padToken: Int32 = 0) {
        precondition(sequences.count <= batch)
        mask.zero()
        for b in 0..<batch {
            let seq = b < sequences.count ? sequences[b] : []
            precondition(seq.count <= length, "sequence of \(seq.count) tokens in a workspace of \(length)")
            for t in 0..<length {
                tokens[b * length + t] = t < seq.count ? seq[t] : padToken
                mask[b * length + t] = t < seq.count ? 1 : 0
            }
        }
    }
}

extension LlamaModel {
    /// y (rows, out) = x (rows, in) · Wᵀ (+ beta·y). The one entry point for frozen projections.
    @inline(__always)
    func project(_ w: FrozenMatrix, _ x: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>, rows: Int, beta: Float = 0,
                 scratch: FloatBuffer) {
        let weights: UnsafePointer<Float>
        if let dense = w.densePointer {
            weights = dense
        } else {
            w.dense(into: scratch.pointer)
            weights = UnsafePointer(scratch.pointer)
        }
        BLAS.linear(x, weights, y, rows: rows, inFeatures: w.cols, outFeatures: w.rows, beta: beta)
    }

    /// Embedding lookup: stream (N, C) = E[tokens]. Throws nothing: ids were validated by the caller.
    func embed(_ ws: ForwardWorkspace, rows: Int) {
        let C = config.hiddenSize
        for r in 0..<rows {
            let id = Int(ws.tokens[r])
            precondition(id >= 0 && id < config.vocabSize, "token id \(id) outside the vocabulary")
            ws.stream.pointer.advanced(by: r * C).update(from: embedding.pointer + id * C, count: C)
        }
    }

    /// Runs all layers over the workspace's tokens. With a KV cache (B = 1), the tokens continue the cached
    /// sequence at position cache.length, and their keys and values are appended to the cache.
    public func forwardLayers(_ ws: ForwardWorkspace, rows queryLength: Int? = nil, cache: KVCache? = nil) {
        let c = config
        let T = queryLength ?? ws.length
        let N = ws.batch * T
        let (C, I, HD, KD) = (c.hiddenSize, c.intermediateSize, c.heads * c.headDim, c.kvHeads * c.headDim)
        let start = cache?.length ?? 0
        if let cache { precondition(ws.batch == 1 && start + T <= cache.capacity) }
        for i in 0..<N { ws.positions[i] = Int32(start + i % T) }
        embed(ws, rows: N)
        let x = ws.stream.pointer
        for (l, w) in layers.enumerated() {
            let a = ws.activations(l)
            a.input.pointer.update(from: x, count: N * C)
            RMSNorm.forward(x, w.attentionNorm, a.norm1.pointer, rstd: a.rstd1.pointer, rows: N, channels: C, eps: c.rmsNormEps)
            let kOut = cache.map { $0.keys[l].pointer + start * KD } ?? a.k.pointer
            let vOut = cache.map { $0.values[l].pointer + start * KD } ?? a.v.pointer
            project(w.projections[.q]!, a.norm1.pointer, a.q.pointer, rows: N, scratch: ws.weightScratch)
            project(w.projections[.k]!, a.norm1.pointer, kOut, rows: N, scratch: ws.weightScratch)
            project(w.projections[.v]!, a.norm1.pointer, vOut, rows: N, scratch: ws.weightScratch)
            if let b = w.biases[.q] { Vector.addBias(a.q.pointer, b, rows: N, cols: HD) }
            if let b = w.biases[.k] { Vector.addBias(kOut, b, rows: N, cols: KD) }
            if let b = w.biases[.v] { Vector.addBias(vOut, b, rows: N, cols: KD) }
            rope.apply(a.q.pointer, rows: N, heads: c.heads, positions: ws.positions.baseAddress!)
            rope.apply(kOut, rows: N, heads: c.kvHeads, positions: ws.positions.baseAddress!)
            let shape = AttentionShape(batch: ws.batch, queryLength: T, keyLength: start + T,
                                       heads: c.heads, kvHeads: c.kvHeads, headDim: c.headDim)
            Attention.forward(shape, q: a.q.pointer,
                              k: cache.map { UnsafePointer($0.keys[l].pointer) } ?? UnsafePointer(a.k.pointer),
                              v: cache.map { UnsafePointer($0.values[l].pointer) } ?? UnsafePointer(a.v.pointer),
                              keyMask: cache == nil ? UnsafePointer(ws.mask.pointer) : nil,
                              probabilities: cache?.probabilities.pointer ?? a.probabilities.pointer, out: a.attention.pointer)
            project(w.projections[.o]!, a.attention.pointer, x, rows: N, beta: 1, scratch: ws.weightScratch)
            a.middle.pointer.update(from: x, count: N * C)
            RMSNorm.forward(x, w.mlpNorm, a.norm2.pointer, rstd: a.rstd2.pointer, rows: N, channels: C, eps: c.rmsNormEps)
            project(w.projections[.gate]!, a.norm2.pointer, a.gate.pointer, rows: N, scratch: ws.weightScratch)
            project(w.projections[.up]!, a.norm2.pointer, a.up.pointer, rows: N, scratch: ws.weightScratch)
            SwiGLU.forward(gate: a.gate.pointer, up: a.up.pointer, a.hidden.pointer, count: N * I)
            project(w.projections[.down]!, a.hidden.pointer, x, rows: N, beta: 1, scratch: ws.weightScratch)
        }
        cache?.length += T
        RMSNorm.forward(x, finalNorm, ws.finalNorm.pointer, rstd: ws.finalRstd.pointer, rows: N, channels: C, eps: c.rmsNormEps)
    }

    /// logits (rows, V) for `rows` consecutive rows of the final normed stream starting at `firstRow`.
    public func computeLogits(_ ws: ForwardWorkspace, firstRow: Int = 0, rows: Int, into out: UnsafeMutablePointer<Float>) {
        let C = config.hiddenSize
        let x = UnsafePointer(ws.finalNorm.pointer + firstRow * C)
        if let head = lmHead {
            project(head, x, out, rows: rows, scratch: ws.weightScratch)
        } else {
            BLAS.linear(x, embedding.pointer, out, rows: rows, inFeatures: C, outFeatures: config.vocabSize)
        }
    }

    /// Full forward to logits (N, V) in `ws.logits`.
    public func forward(_ ws: ForwardWorkspace) {
        forwardLayers(ws)
        computeLogits(ws, rows: ws.rows, into: ws.logits.pointer)
    }
}

/// Keys and values of past positions for one sequence, per layer: (capacity, K·D) each.
public final class KVCache {
    public let capacity: Int
    public var length = 0
    public let keys: [FloatBuffer], values: [FloatBuffer]
    let probabilities: FloatBuffer   // (H, Tq, capacity) scratch

    public init(model: LlamaModel, capacity: Int, maxQuery: Int) {
        let c = model.config
        self.capacity = capacity
        keys = (0..<c.layers).map { _ in FloatBuffer(count: capacity * c.kvHeads * c.headDim) }
        values = (0..<c.layers).map { _ in FloatBuffer(count: capacity * c.kvHeads * c.headDim) }
        probabilities = FloatBuffer(count: c.heads * maxQuery * capacity)
    }
}
