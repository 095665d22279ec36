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
    /// q (H·D, C), k (K·D, C), v (K·D, C), o (C, H·D), gate (I, C), up (I, C), down (C, I)
    public var projections: [TensorNames.Projection: FrozenMatrix]
    /// qwen2 only: q (H·D), k (K·D), v (K·D)
    public var biases: [TensorNames.Projection: [Float]]
}

public final class LlamaModel {
    public let config: LlamaConfig
    public let source: ModelSource
    public let embedding: FloatBuffer      // (V, C)
    public let lmHead: FrozenMatrix?       // (V, C); nil when tied to the embedding
    public let finalNorm: [Float]          // (C)
    public let layers: [LayerWeights]
    public let rope: RoPETable
    public let precision: WeightPrecision
    /// A separate quantized LM head dequantized once (it is used every step).
    var lmHeadScratch: FrozenMatrix?

    public let placement: Placement
    let gatherScratch: GatherScratch

    /// With `placement: .sharded` and a communicator of N > 1 ranks, each rank keeps 1/N of every projection.
    public init(source: ModelSource, precision: WeightPrecision = .fp32, maxPositions: Int? = nil,
                placement: Placement = .replicated, comm: Communicator? = nil) throws {
        self.placement = placement
        let gatherScratch = GatherScratch()
        self.gatherScratch = gatherScratch
        let c = source.config
        self.config = c
        self.source = source
        self.precision = precision
        func raw(_ name: String, _ shape: [Int]) throws -> RawTensor {
            guard let t = try source.tensor(name) else {
                throw FormatError.key(source.path, TensorNames.gguf(name).map { source.gguf != nil ? $0 : name } ?? name,
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
        func matrix(_ name: String, rows: Int, cols: Int) throws -> FrozenMatrix {
            let t = try raw(name, [rows, cols])
            let m = FrozenMatrix(rows: rows, cols: cols, storage: .quantized(t.type, t.data, owner: t.owner),
                                 permutedHeads: t.permutedHeads)
            let held: FrozenMatrix
            switch precision {
            case .fp32: held = m.densified()
            case .asStored: held = m
            case .nf4: held = (rows * cols) % NF4.blockSize == 0 ? m.quantizedNF4() : m
            }
            if placement == .sharded, let comm, comm.size > 1, name != TensorNames.embedding {
                return held.sharded(comm: comm, scratch: gatherScratch)
            }
            return held
        }
        let (C, V, I) = (c.hiddenSize, c.vocabSize, c.intermediateSize)
        let (qRows, kvRows) = (c.heads * c.headDim, c.kvHeads * c.headDim)
        let embed = try raw(TensorNames.embedding, [V, C]).asMatrix(rows: V, cols: C).densified()
        guard case .dense(let embedBuffer) = embed.storage else { preconditionFailure() }
        embedding = embedBuffer
        lmHead = c.tiedEmbeddings ? nil : try matrix(TensorNames.lmHead, rows: V, cols: C)
        finalNorm = try vector(TensorNames.finalNorm, C)
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
            if c.attentionBias {
                biases[.q] = try vector(TensorNames.projection(l, .q, bias: true), qRows)
                biases[.k] = try vector(TensorNames.projection(l, .k, bias: true), kvRows)
                biases[.v] = try vector(TensorNames.projection(l, .v, bias: true), kvRows)
            }
            layers.append(LayerWeights(attentionNorm: try vector(TensorNames.attentionNorm(l), C),
                                       mlpNorm: try vector(TensorNames.mlpNorm(l), C),
                                       projections: projections, biases: biases))
        }
        self.layers = layers
        let positions = min(maxPositions ?? c.maxPositions, max(c.maxPositions, 1))
        rope = RoPETable(headDim: c.headDim, maxPositions: max(positions, 1),
                         inverseFrequencies: c.ropeInverseFrequencies(freqFactors: try source.ropeFrequencyFactors()))
    }

    /// Bytes held for the frozen base (quantized blocks count at their stored size).
    public var baseBytes: Int {
        var total = embedding.count * 4 + (lmHead?.storedBytes ?? 0)
        for l in layers { total += l.projections.values.reduce(0) { $0 + $1.storedBytes } }
        return total
    }

    /// Bytes of the scratch buffers (fp32 dequantization of one projection, gather buffer for sharding).
    public var scratchBytes: Int { (precision == .fp32 && placement == .replicated ? 0 : largestProjection * 4) + gatherScratch.bytes.count }

    /// Largest projection (elements), the size of the per-layer dequantization scratch.
    var largestProjection: Int {
        layers.first.map { $0.projections.values.map { $0.rows * $0.cols }.max() ?? 0 } ?? 0
    }
}
