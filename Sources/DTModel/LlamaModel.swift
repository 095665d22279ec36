// The frozen Llama-family base: configuration, weights and RoPE table. Loading checks every tensor's
// presence and shape and names the file and tensor on a mismatch.
import DTFormats
import DTKernels
import DTParallel
import Foundation

public enum WeightPrecision: String, Sendable, CaseIterable {
    /// Everything dequantized to fp32 at load (LoRA, fastest products).
    case fp32
    /// Projections kept in their stored blocks and dequantized per layer just before use (QLoRA over GGUF).
    case asStored = "as-stored"
    /// Projections quantized at load to NF4 with double quantization (QLoRA, bitsandbytes-compatible).
    case nf4
}

public struct LayerWeights {
    public var attentionNorm: [Float]     // (C)
    public var mlpNorm: [Float]           // (C)
    /// Sandwich norms (Architecture.sandwichNorms): of the attention output and of the MLP output, (C) each
    public var postAttentionNorm: [Float]?, postMLPNorm: [Float]?
    /// q (H·D, C), k (K·D, C), v (K·D, C), o (C, H·D), gate (I, C), up (I, C), down (C, I)
    public var projections: [TensorNames.Projection: FrozenMatrix]
    /// with Architecture.qkvBias: q (H·D), k (K·D), v (K·D)
    public var biases: [TensorNames.Projection: [Float]]
    /// with Architecture.qkNorm: per-head RMSNorm weights of q and k, (D) each
    public var queryNorm: [Float]?, keyNorm: [Float]?
}

public final class LlamaModel {
    public let config: LlamaConfig
    public let source: ModelSource
    public let embedding: VocabularyMatrix   // (V, C)
    public let lmHead: VocabularyMatrix?     // (V, C); nil when tied to the embedding
    public let finalNorm: [Float]          // (C)
    public let layers: [LayerWeights]
    /// cos/sin for the positions used so far: `maxPositions` at load, grown by `reservePositions` up to the context.
    public private(set) var rope: RoPETable
    /// The windowed layers' table when their base differs (Architecture.localRopeTheta), else nil.
    public private(set) var localRope: RoPETable?
    /// LongRoPE's table with the long factors (config.longRope), for passes that reach beyond the original context;
    /// `rope` then holds the short factors.
    public private(set) var longRope: RoPETable?
    let ropeFrequencies: [Float], localRopeFrequencies: [Float]?, longRopeFrequencies: [Float]?
    public let precision: WeightPrecision
    /// Precision of the frozen-weight products (bf16: weights rounded once at load, or dequantized per use to bf16).
    public let compute: ComputePrecision
    public let placement: Placement
    /// Stored bytes of the frozen matrices this rank read from the model files while loading (its shares only
    /// when the base is split across ranks).
    public let bytesRead: Int
    /// Stored bytes of all the frozen matrices in the model files (what one rank loading them whole reads).
    public let storedMatrixBytes: Int
    /// Whether each rank holds only its share of every frozen matrix (placement: sharded on more than one rank).
    public let splitsAcrossRanks: Bool
    let gatherScratch: GatherScratch
    /// All-gathers of a base split across ranks so far (count, bytes this rank received, seconds).
    public var gatherTraffic: (gathers: Int, receivedBytes: Int, seconds: Double) {
        (gatherScratch.gathers, gatherScratch.receivedBytes, gatherScratch.seconds)
    }
    /// Frozen weights are turned into fp32 right before each use (quantized, or gathered from the ranks):
    /// the model needs a dequantization scratch and keeps the vocabulary matrices in chunks.
    let dequantizesPerUse: Bool

    /// With `placement: .sharded` and a communicator of N > 1 ranks, each rank keeps 1/N of every projection
    /// and of the embedding / LM head.
    public init(source: ModelSource, precision: WeightPrecision = .fp32, compute: ComputePrecision = .fp32, maxPositions: Int? = nil,
                placement: Placement = .replicated, comm: Communicator? = nil, progress: ((LoadProgress) -> Void)? = nil) throws {
        self.placement = placement
        self.compute = compute
        let splitsAcrossRanks = placement == .sharded && (comm?.size ?? 1) > 1
        self.splitsAcrossRanks = splitsAcrossRanks
        let dequantizesPerUse = precision != .fp32 || splitsAcrossRanks
        self.dequantizesPerUse = dequantizesPerUse
        let gatherScratch = GatherScratch()
        self.gatherScratch = gatherScratch
        let c = source.config
        self.config = c
        self.source = source
        self.precision = precision
        let matrixNames = (0..<c.layers).flatMap { l in TensorNames.Projection.allCases.map { TensorNames.projection(l, $0) } }
            + [TensorNames.embedding] + (c.tiedEmbeddings ? [] : [TensorNames.lmHead])
        var loaded = LoadProgress(tensors: matrixNames.count,
                                  bytes: matrixNames.reduce(0) { $0 + source.storedBytes($1) })
        func converted(storedBytes: Int) {
            loaded.tensorsDone += 1
            loaded.bytesDone += storedBytes
            progress?(loaded)
        }
        func raw(_ name: String, _ shape: [Int]) throws -> RawTensor {
            guard let t = try source.tensor(name) else {
                throw FormatError.key(source.path, TensorNames.gguf(name, sandwich: c.architecture.sandwichNorms).map { source.gguf != nil ? $0 : name } ?? name,
                                      "missing tensor (expected shape \(shape))")
            }
            guard t.shape == shape else {
                throw FormatError.key(t.file, name, "expected shape \(shape), found \(t.shape)")
            }
            return t
        }
        func vector(_ name: String, _ n: Int) throws -> [Float] {
            let t = try raw(name, [n])
            var out = [Float](repeating: 0, count: n)
            out.withUnsafeMutableBufferPointer { Dequantize.run(t.type, t.data, $0.baseAddress!, count: n) }
            if let heads = t.permutedHeads {  // a permuted bias (rare): reorder like the rows
                let d = n / heads
                var fixed = out
                for r in 0..<n { fixed[(r / d) * d + (r % d % 2) * (d / 2) + (r % d) / 2] = out[r] }
                out = fixed
            }
            return out
        }
        /// A norm weight as the forward uses it: HF's stored w shifted by the family's offset (1 + w for Gemma);
        /// llama.cpp's converter stores GGUF norms already shifted.
        func norm(_ name: String, _ n: Int) throws -> [Float] {
            let offset = source.gguf == nil ? c.architecture.normWeightOffset : 0
            return try vector(name, n).map { $0 + offset }
        }
        /// A projection as `precision` keeps it; with the base split across ranks, only this rank's share is read.
        func matrix(_ name: String, rows: Int, cols: Int) throws -> FrozenMatrix {
            if let bnb = try source.bitsandbytesNF4(name, rows: rows, cols: cols) {   // a pre-quantized checkpoint
                let result: FrozenMatrix
                if splitsAcrossRanks, let comm {
                    let share = bnb.loadShare(rows: rows, cols: cols, precision: precision, compute: compute, comm: comm, scratch: gatherScratch)
                    result = share.matrix
                    loaded.bytesRead += share.bytesRead
                } else {
                    let m = FrozenMatrix(rows: rows, cols: cols, storage: .nf4(bnb.tensor))
                    result = precision == .fp32 ? m.resident(compute) : m.computing(in: compute)
                    loaded.bytesRead += bnb.codes.count
                }
                converted(storedBytes: bnb.codes.count)
                bnb.releaseResidentPages()
                return result
            }
            let t = try raw(name, [rows, cols])
            let m = t.asMatrix(rows: rows, cols: cols)
            let result: FrozenMatrix
            if splitsAcrossRanks, let comm {
                let share = m.loadShare(precision: precision, compute: compute, comm: comm, scratch: gatherScratch)
                result = share.matrix
                loaded.bytesRead += share.bytesRead
            } else {
                switch precision {
                case .fp32: result = m.resident(compute)
                case .asStored: result = m.computing(in: compute)
                case .nf4: result = ((rows * cols) % NF4.blockSize == 0 ? m.quantizedNF4() : m).computing(in: compute)
                }
                loaded.bytesRead += t.byteCount
            }
            converted(storedBytes: t.byteCount)
            // Streaming load: once converted into memory of its own (fp32/bf16 copy, NF4, this rank's share) the
            // tensor's file pages leave the resident set before the next tensor is read.
            if !result.pointsInto(t.owner) { t.releaseResidentPages() }
            return result
        }
        let (C, V, I) = (c.hiddenSize, c.vocabSize, c.intermediateSize)
        let (qRows, kvRows) = (c.heads * c.headDim, c.kvHeads * c.headDim)
        /// fp32 and replicated: one dense matrix. Otherwise chunks the size of the per-layer scratch, kept as
        /// stored (QLoRA) and sharded like the projections.
        /// With bf16 products over a resident fp32 base, embeddings are looked up in fp32 and the LM head
        /// multiplies a bf16 copy: a tied matrix keeps both, an untied embedding only fp32, the head only bf16.
        func vocabulary(_ name: String, lookup: Bool, products: Bool) throws -> VocabularyMatrix {
            let stored = try raw(name, [V, C])
            let whole = stored.asMatrix(rows: V, cols: C)
            let chunkRows = dequantizesPerUse ? max(1, Self.largestProjection(c) / C) : V
            defer {
                converted(storedBytes: stored.byteCount)
                // Copied (fp32 base) or split across ranks: nothing reads these file pages any more.
                if precision == .fp32 || splitsAcrossRanks { stored.releaseResidentPages() }
            }
            if splitsAcrossRanks, let comm {   // each chunk's share, read alone; never NF4 (as bitsandbytes)
                return VocabularyMatrix(whole, chunkRows: chunkRows) {
                    let share = $0.loadShare(precision: precision == .fp32 ? .fp32 : .asStored, compute: compute, comm: comm, scratch: gatherScratch)
                    loaded.bytesRead += share.bytesRead
                    return share.matrix
                }
            }
            loaded.bytesRead += stored.byteCount
            if precision == .fp32 && compute == .bf16 && lookup {
                let rows = whole.resident(.fp32)
                return VocabularyMatrix(whole, chunkRows: chunkRows, lookup: rows) { products ? $0.resident(.bf16) : rows }
            }
            return VocabularyMatrix(whole, chunkRows: chunkRows) { precision == .fp32 ? $0.resident(compute) : $0.computing(in: compute) }
        }
        embedding = try vocabulary(TensorNames.embedding, lookup: true, products: c.tiedEmbeddings)
        lmHead = c.tiedEmbeddings ? nil : try vocabulary(TensorNames.lmHead, lookup: false, products: true)
        finalNorm = try norm(TensorNames.finalNorm, C)
        var layers: [LayerWeights] = []
        for l in 0..<c.layers {
            var projections: [TensorNames.Projection: FrozenMatrix] = [:]
            let shapes: [TensorNames.Projection: (Int, Int)] = [.q: (qRows, C), .k: (kvRows, C), .v: (kvRows, C), .o: (C, qRows),
                                                               .gate: (I, C), .up: (I, C), .down: (C, I)]
            for p in TensorNames.Projection.allCases {
                let (rows, cols) = shapes[p]!
                projections[p] = try matrix(TensorNames.projection(l, p), rows: rows, cols: cols)
            }
            var biases: [TensorNames.Projection: [Float]] = [:]
            if c.architecture.qkvBias {
                biases[.q] = try vector(TensorNames.projection(l, .q, bias: true), qRows)
                biases[.k] = try vector(TensorNames.projection(l, .k, bias: true), kvRows)
                biases[.v] = try vector(TensorNames.projection(l, .v, bias: true), kvRows)
            }
            let sandwich = c.architecture.sandwichNorms
            layers.append(LayerWeights(attentionNorm: try norm(TensorNames.attentionNorm(l), C),
                                       mlpNorm: try norm(TensorNames.mlpNorm(l, sandwich: sandwich), C),
                                       postAttentionNorm: sandwich ? try norm(TensorNames.postAttentionNorm(l), C) : nil,
                                       postMLPNorm: sandwich ? try norm(TensorNames.postMLPNorm(l), C) : nil,
                                       projections: projections, biases: biases,
                                       queryNorm: c.architecture.qkNorm ? try norm(TensorNames.queryNorm(l), c.headDim) : nil,
                                       keyNorm: c.architecture.qkNorm ? try norm(TensorNames.keyNorm(l), c.headDim) : nil))
        }
        self.layers = layers
        bytesRead = loaded.bytesRead
        storedMatrixBytes = loaded.bytes
        // What the matrices left behind (1-D tensors, pages shared by neighbours; with large page-cache folios
        // a fault maps up to 2 MiB around it) leaves too. Always safe: a base used as stored reads its pages
        // back from the page cache at first use.
        source.releaseResidentPages()
        let positions = min(maxPositions ?? c.maxPositions, max(c.maxPositions, 1))
        ropeFrequencies = c.ropeInverseFrequencies(freqFactors: try source.ropeFrequencyFactors() ?? c.longRope?.short)
        let ropeScale = c.longRope?.attentionFactor ?? 1
        rope = RoPETable(headDim: c.headDim, maxPositions: max(positions, 1), inverseFrequencies: ropeFrequencies, scale: ropeScale)
        longRopeFrequencies = c.longRope.map { c.ropeInverseFrequencies(freqFactors: $0.long) }
        longRope = longRopeFrequencies.map { RoPETable(headDim: c.headDim, maxPositions: max(positions, 1), inverseFrequencies: $0, scale: ropeScale) }
        localRopeFrequencies = c.architecture.localRopeTheta.map { c.ropeInverseFrequencies(theta: $0) }
        localRope = localRopeFrequencies.map { RoPETable(headDim: c.headDim, maxPositions: max(positions, 1), inverseFrequencies: $0) }
    }

    /// How far loading has come, for a progress line: frozen matrices converted of all, and their stored bytes.
    public struct LoadProgress: Sendable {
        public var tensors: Int, bytes: Int
        public var tensorsDone = 0, bytesDone = 0
        /// Stored bytes of the matrices read from the model files so far: all of them, or this rank's shares
        /// when the base is split across ranks.
        public var bytesRead = 0
    }

    /// The RoPE table of a layer with `window` in a pass over `ws`: LongRoPE's long table when the pass reaches
    /// beyond the original context (`ws.reachesLongContext`), the windowed layers' own base, else the model's.
    func ropeTable(window: Int?, _ ws: ForwardWorkspace) -> RoPETable {
        if ws.reachesLongContext, let longRope { return longRope }
        return window != nil ? localRope ?? rope : rope
    }

    /// The model file and key that state its context length (for messages).
    public var contextKey: (file: String, key: String) {
        source.gguf != nil ? (source.path, "\(config.architecture.name).context_length")
            : ((source.path as NSString).appendingPathComponent("config.json"), "max_position_embeddings")
    }

    /// Makes the RoPE table cover `positions` positions, or refuses (naming the model's context key) when the
    /// model's context is shorter: nothing may read past the table. `what` says what needs them.
    public func reservePositions(_ positions: Int, for what: String) throws {
        guard positions <= config.maxPositions else {
            throw FormatError.key(contextKey.file, contextKey.key,
                                  "the model's context is \(config.maxPositions) positions, but \(what) needs \(positions)")
        }
        if positions > rope.maxPositions {
            let scale = config.longRope?.attentionFactor ?? 1
            rope = RoPETable(headDim: config.headDim, maxPositions: positions, inverseFrequencies: ropeFrequencies, scale: scale)
            longRope = longRopeFrequencies.map { RoPETable(headDim: config.headDim, maxPositions: positions, inverseFrequencies: $0, scale: scale) }
            localRope = localRopeFrequencies.map { RoPETable(headDim: config.headDim, maxPositions: positions, inverseFrequencies: $0) }
        }
    }

    /// Bytes held for the frozen base (quantized blocks count at their stored size).
    public var baseBytes: Int {
        var total = embedding.storedBytes + (lmHead?.storedBytes ?? 0)
        for l in layers { total += l.projections.values.reduce(0) { $0 + $1.storedBytes } }
        return total
    }

    /// Bytes of the scratch buffers: a workspace's product scratch (per-use dequantization, bf16 inputs) and
    /// the gather buffer of a sharded base.
    public func scratchBytes(_ ws: ForwardWorkspace) -> Int { ws.productScratch.bytes + gatherScratch.bytes.count }

    /// Largest projection (elements), the size of the per-layer dequantization scratch.
    public var largestProjection: Int { Self.largestProjection(config) }

    static func largestProjection(_ c: LlamaConfig) -> Int {
        c.hiddenSize * max(c.heads * c.headDim, c.intermediateSize)
    }

    /// Elements of the product scratch for up to `rows` activation rows: one per-use weight (when weights are
    /// dequantized or gathered per use) and, for bf16 products, the widest product input rounded to bf16
    /// (an LM head chunk's width in backward).
    func productScratchElements(rows: Int) -> (weights: Int, input: Int) {
        let c = config
        let widest = max(c.hiddenSize, c.intermediateSize, c.heads * c.headDim, (lmHead ?? embedding).chunkRows)
        return (dequantizesPerUse ? largestProjection : 0, compute == .bf16 ? rows * widest : 0)
    }

    /// Scratch for the products of up to `rows` activation rows (dequantization and bf16 rounding).
    public func makeProductScratch(rows: Int) -> ProductScratch {
        let n = productScratchElements(rows: rows)
        return ProductScratch(weightElements: n.weights, bf16Weights: compute == .bf16, inputElements: n.input)
    }
}
