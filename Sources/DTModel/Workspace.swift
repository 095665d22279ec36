// Buffers for forward (and backward) passes of up to (B, T), allocated once and reused every step.
// Letters: B batch, T tokens per sequence, N = B·T rows, C hidden, H/K query/kv heads, D head dim, I MLP width, V vocab.
import DTKernels

public final class LayerActivations {
    public let norm1: FloatBuffer          // (N, C)
    public let rstd1: FloatBuffer          // (N)
    public let q: FloatBuffer              // (N, H·D) after RoPE
    public let k: FloatBuffer              // (N, K·D) after RoPE
    /// QK-norm only (else empty): q, k before their per-head RMSNorm, and its rstd
    public let qRaw: FloatBuffer           // (N, H·D)
    public let kRaw: FloatBuffer           // (N, K·D)
    public let rstdQ: FloatBuffer          // (N·H)
    public let rstdK: FloatBuffer          // (N·K)
    public let v: FloatBuffer              // (N, K·D)
    public let logSumExp: FloatBuffer      // (B, H, T) per query row, from which backward recomputes the probabilities
    public let attention: FloatBuffer      // (N, H·D) before o_proj
    public let middle: FloatBuffer         // (N, C) residual stream after attention
    public let norm2: FloatBuffer          // (N, C)
    public let rstd2: FloatBuffer          // (N)
    public let gate: FloatBuffer           // (N, I)
    public let up: FloatBuffer             // (N, I)
    public let hidden: FloatBuffer         // (N, I) act(gate)·up
    /// Sandwich norms only (else empty): o_proj's and down_proj's outputs before their norms, those norms'
    /// rstd, and the normed output on its way into the residual stream
    public let attentionOut: FloatBuffer   // (N, C)
    public let mlpOut: FloatBuffer         // (N, C)
    public let rstdPostAttention: FloatBuffer, rstdPostMLP: FloatBuffer   // (N)
    public let normedOut: FloatBuffer      // (N, C)

    init(_ c: LlamaConfig, batch: Int, length: Int) {
        let n = batch * length
        let sandwich = c.architecture.sandwichNorms ? 1 : 0
        attentionOut = FloatBuffer(count: sandwich * n * c.hiddenSize); mlpOut = FloatBuffer(count: sandwich * n * c.hiddenSize)
        rstdPostAttention = FloatBuffer(count: sandwich * n); rstdPostMLP = FloatBuffer(count: sandwich * n)
        normedOut = FloatBuffer(count: sandwich * n * c.hiddenSize)
        norm1 = FloatBuffer(count: n * c.hiddenSize); rstd1 = FloatBuffer(count: n)
        q = FloatBuffer(count: n * c.heads * c.headDim)
        k = FloatBuffer(count: n * c.kvHeads * c.headDim); v = FloatBuffer(count: n * c.kvHeads * c.headDim)
        let qkNorm = c.architecture.qkNorm ? 1 : 0
        qRaw = FloatBuffer(count: qkNorm * n * c.heads * c.headDim); kRaw = FloatBuffer(count: qkNorm * n * c.kvHeads * c.headDim)
        rstdQ = FloatBuffer(count: qkNorm * n * c.heads); rstdK = FloatBuffer(count: qkNorm * n * c.kvHeads)
        logSumExp = FloatBuffer(count: batch * c.heads * length)
        attention = FloatBuffer(count: n * c.heads * c.headDim)
        middle = FloatBuffer(count: n * c.hiddenSize); norm2 = FloatBuffer(count: n * c.hiddenSize); rstd2 = FloatBuffer(count: n)
        gate = FloatBuffer(count: n * c.intermediateSize); up = FloatBuffer(count: n * c.intermediateSize)
        hidden = FloatBuffer(count: n * c.intermediateSize)
    }

    var bytes: Int {
        [norm1, rstd1, q, k, v, qRaw, kRaw, rstdQ, rstdK, logSumExp, attention, middle, norm2, rstd2, gate, up, hidden,
         attentionOut, mlpOut, rstdPostAttention, rstdPostMLP, normedOut].reduce(0) { $0 + $1.count * 4 }
    }
}

/// Gradient buffers shared by all layers during backward.
public final class GradientBuffers {
    public let stream: FloatBuffer      // (N, C) dL/d residual stream
    public let norm: FloatBuffer        // (N, C)
    public let attention: FloatBuffer   // (N, H·D)
    public let q: FloatBuffer           // (N, H·D)
    public let k: FloatBuffer           // (N, K·D)
    public let v: FloatBuffer           // (N, K·D)
    /// QK-norm only (else empty): dL/d q, k before their per-head RMSNorm
    public let qRaw: FloatBuffer        // (N, H·D)
    public let kRaw: FloatBuffer        // (N, K·D)
    public let hidden: FloatBuffer      // (N, I)
    /// Sandwich norms only (else empty): dL/d(o_proj or down_proj output) before its norm
    public let sandwich: FloatBuffer    // (N, C)
    public let gate: FloatBuffer        // (N, I)
    public let up: FloatBuffer          // (N, I)

    init(_ c: LlamaConfig, batch: Int, length: Int) {
        let n = batch * length
        stream = FloatBuffer(count: n * c.hiddenSize); norm = FloatBuffer(count: n * c.hiddenSize)
        attention = FloatBuffer(count: n * c.heads * c.headDim); q = FloatBuffer(count: n * c.heads * c.headDim)
        k = FloatBuffer(count: n * c.kvHeads * c.headDim); v = FloatBuffer(count: n * c.kvHeads * c.headDim)
        let qkNorm = c.architecture.qkNorm ? 1 : 0
        qRaw = FloatBuffer(count: qkNorm * n * c.heads * c.headDim); kRaw = FloatBuffer(count: qkNorm * n * c.kvHeads * c.headDim)
        sandwich = FloatBuffer(count: (c.architecture.sandwichNorms ? 1 : 0) * n * c.hiddenSize)
        hidden = FloatBuffer(count: n * c.intermediateSize); gate = FloatBuffer(count: n * c.intermediateSize)
        up = FloatBuffer(count: n * c.intermediateSize)
    }
}

public final class ForwardWorkspace {
    public enum Mode: Equatable {
        case inference
        /// Keep what backward needs; with `recompute`, only each layer's input is kept and the layer is
        /// recomputed during backward (less memory, one more forward of compute).
        case training(recompute: Bool)
    }

    public let maxBatch: Int, maxLength: Int
    public private(set) var batch: Int, length: Int
    public var rows: Int { batch * length }
    public var maxRows: Int { maxBatch * maxLength }
    /// Set by each forward pass: whether its largest position is beyond LongRoPE's original context (long factors).
    public internal(set) var reachesLongContext = false
    public let mode: Mode
    /// Whether every layer's activations stay until backward (training without recompute).
    public var keepsEveryLayer: Bool { mode == .training(recompute: false) }
    public let tokens: UnsafeMutableBufferPointer<Int32>      // (N)
    public let positions: UnsafeMutableBufferPointer<Int32>   // (N)
    public let mask: FloatBuffer                              // (B, T) 1 = real token, 0 = padding
    /// Packed rows: where each position's sequence starts in its row (attention stays inside it) — set by
    /// `loadPacked`, whose positions also restart per sequence; nil for one sequence per row.
    public private(set) var segmentStarts: UnsafeMutableBufferPointer<Int32>?   // (B, T)
    private let segmentStorage: UnsafeMutableBufferPointer<Int32>
    public let layerInputs: [FloatBuffer]                     // L × (N, C) residual stream entering each layer (training)
    let activations: [LayerActivations]                       // L when kept for backward, else 1
    public let stream: FloatBuffer                            // (N, C) residual stream
    public let finalNorm: FloatBuffer                         // (N, C)
    public let finalRstd: FloatBuffer                         // (N)
    public let logits: FloatBuffer                            // (N, V), or (targets, V) when rows are selected; empty when not wanted
    /// Rows whose logits the LM head computes when a selection is set (`selectTargets`): only positions that
    /// have a target pay for the vocabulary product, forward and backward.
    public let targetRows: UnsafeMutableBufferPointer<Int32>  // (N)
    public private(set) var targetCount: Int?                 // nil: every row
    let targetNorm: FloatBuffer                               // (N, C) final-norm rows of the targets, then their gradient
    public let productScratch: ProductScratch                 // per-use dequantization, (N, widest input) bf16 rounding
    public let gradients: GradientBuffers?

    public init(model: LlamaModel, batch: Int, length: Int, mode: Mode = .inference, withLogits: Bool = true) {
        let c = model.config
        maxBatch = batch; maxLength = length
        self.batch = batch; self.length = length
        self.mode = mode
        let n = batch * length
        tokens = .allocate(capacity: n); tokens.initialize(repeating: 0)
        positions = .allocate(capacity: n); positions.initialize(repeating: 0)
        mask = FloatBuffer(count: n)
        segmentStorage = .allocate(capacity: n); segmentStorage.initialize(repeating: 0)
        let training = mode != .inference
        let keepAll = mode == .training(recompute: false)
        layerInputs = training ? (0..<c.layers).map { _ in FloatBuffer(count: n * c.hiddenSize) } : []
        activations = (0..<(keepAll ? c.layers : 1)).map { _ in LayerActivations(c, batch: batch, length: length) }
        stream = FloatBuffer(count: n * c.hiddenSize)
        finalNorm = FloatBuffer(count: n * c.hiddenSize)
        finalRstd = FloatBuffer(count: n)
        logits = FloatBuffer(count: withLogits ? n * c.vocabSize : 0)
        targetRows = .allocate(capacity: n); targetRows.initialize(repeating: 0)
        targetNorm = FloatBuffer(count: withLogits ? n * c.hiddenSize : 0)
        productScratch = model.makeProductScratch(rows: n)
        gradients = training ? GradientBuffers(c, batch: batch, length: length) : nil
    }

    deinit { tokens.deallocate(); positions.deallocate(); targetRows.deallocate(); segmentStorage.deallocate() }

    /// Rows the LM head computes: all N, or the selected ones.
    public var logitRows: Int { targetCount ?? rows }

    /// From now until the next load or reshape, the LM head computes only rows whose label (N) is ≥ 0, in row
    /// order; their labels are moved to the front of `labels` (so logits row i has label labels[i]). Returns
    /// the number of such rows.
    @discardableResult
    public func selectTargets(labels: UnsafeMutablePointer<Int32>) -> Int {
        var n = 0
        for r in 0..<rows where labels[r] >= 0 {
            targetRows[n] = Int32(r)
            labels[n] = labels[r]
            n += 1
        }
        targetCount = n
        return n
    }

    public func activations(_ layer: Int) -> LayerActivations { activations[activations.count == 1 ? 0 : layer] }

    /// Uses the first (batch, length) of the allocated (maxBatch, maxLength) for the next pass.
    public func setShape(batch: Int, length: Int) {
        precondition(batch >= 1 && batch <= maxBatch && length >= 1 && length <= maxLength,
                     "shape (\(batch), \(length)) exceeds the workspace (\(maxBatch), \(maxLength))")
        self.batch = batch; self.length = length
        targetCount = nil
        segmentStarts = nil
    }

    /// Loads sequences right-padded to the longest (plus `reserved` leading slots per sequence, filled by
    /// the adapter's virtual tokens), sets the mask, and shapes the workspace to fit.
    public func load(_ sequences: [[Int32]], padToken: Int32 = 0, reserved: Int = 0, length fixedLength: Int? = nil) {
        let T = fixedLength ?? (reserved + (sequences.map(\.count).max() ?? 1))
        setShape(batch: max(1, sequences.count), length: T)
        for b in 0..<batch {
            let seq = b < sequences.count ? sequences[b] : []
            precondition(reserved + seq.count <= T, "sequence of \(seq.count) tokens in a workspace of \(T)")
            for t in 0..<T {
                let i = t - reserved
                tokens[b * T + t] = i >= 0 && i < seq.count ? seq[i] : padToken
                mask[b * T + t] = t < reserved || (i >= 0 && i < seq.count) ? 1 : 0
            }
        }
    }

    /// Packs sequences into rows of `length` tokens, in order, a sequence going to the current row while it
    /// fits (each must fit in one row): positions restart at 0 for each sequence and its tokens attend only
    /// within it, so every sequence gives what it gives alone, without the padding. Returns, per sequence,
    /// (row, first column).
    @discardableResult
    public func loadPacked(_ sequences: [[Int32]], length: Int, padToken: Int32 = 0) -> [(row: Int, column: Int)] {
        var placement: [(row: Int, column: Int)] = []
        var row = 0, column = 0
        for seq in sequences {
            precondition(seq.count >= 1 && seq.count <= length, "a sequence of \(seq.count) tokens in packed rows of \(length)")
            if column + seq.count > length { row += 1; column = 0 }
            placement.append((row, column))
            column += seq.count
        }
        setShape(batch: max(1, row + 1), length: length)
        let T = length
        for i in 0..<rows { tokens[i] = padToken; mask[i] = 0; positions[i] = Int32(i % T); segmentStorage[i] = Int32(i % T) }
        for (seq, at) in zip(sequences, placement) {
            for (t, token) in seq.enumerated() {
                let i = at.row * T + at.column + t
                tokens[i] = token; mask[i] = 1; positions[i] = Int32(t); segmentStorage[i] = Int32(at.column)
            }
        }
        segmentStarts = segmentStorage
        return placement
    }

    /// Bytes a workspace of (batch, length) in `mode` allocates — the same buffers as `init`, counted in Double so
    /// a hostile shape cannot overflow — for the memory preflight before it is made. `layers` replaces the model's
    /// layer count (`dtrain plan` estimates the whole model from a probe of its first layers).
    public static func estimatedBytes(model: LlamaModel, batch: Int, length: Int, mode: Mode, withLogits: Bool = true,
                                      layers: Int? = nil) -> Double {
        var c = model.config
        if let layers { c.layers = layers }
        let (B, T) = (Double(batch), Double(length))
        let n = B * T, C = Double(c.hiddenSize), I = Double(c.intermediateSize), V = Double(c.vocabSize)
        let HD = Double(c.heads * c.headDim), KD = Double(c.kvHeads * c.headDim), L = Double(c.layers)
        let training = mode != .inference, keepAll = mode == .training(recompute: false)
        let qkNorm = c.architecture.qkNorm ? 1.0 : 0.0
        let layer = n * (4 * C + 2 * HD + 2 * KD + 3 * I + 2) + B * Double(c.heads) * T
            + qkNorm * n * (HD + KD + Double(c.heads + c.kvHeads))
            + (c.architecture.sandwichNorms ? n * (3 * C + 2) : 0)
        var floats = (keepAll ? L : 1) * layer + (training ? L * n * C : 0) + n * (2 * C + 2)
        floats += withLogits ? n * (V + C) : 0
        // attention's per-worker tiles: (tile, T) of probabilities in forward, 3 × (tile, T) in backward
        floats += Double(max(1, Parallel.workers)) * Double(Attention.tile) * T * (training ? 3 : 1)
        if training { floats += n * (2 * C + 2 * HD + 2 * KD + 3 * I) + qkNorm * n * (HD + KD)
            + (c.architecture.sandwichNorms ? n * C : 0) }
        let scratch = model.productScratchElements(rows: batch * length)
        let scratchBytes = Double(scratch.weights) * (model.compute == .bf16 ? 6 : 4) + Double(scratch.input) * 2
        return 4 * floats + 16 * n + scratchBytes
    }

    /// Bytes of activation and gradient buffers (for memory accounting).
    public var activationBytes: Int {
        activations.reduce(0) { $0 + $1.bytes } + layerInputs.reduce(0) { $0 + $1.count * 4 }
            + (stream.count + finalNorm.count + logits.count) * 4
    }
}
