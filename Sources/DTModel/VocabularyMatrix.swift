// The (V, C) token embedding, which is also the LM head when tied (and the untied LM head itself). For LoRA
// it is one fp32 matrix. For QLoRA it stays in its stored type (GGUF blocks, F16/BF16 — bitsandbytes does
// not quantize embeddings either) cut into row chunks no larger than the biggest projection; a chunk is
// dequantized into the per-layer scratch right before use and, with `sharded` placement, split across
// the ranks like the projections (so every rank must visit every chunk in the same order).
import DTFormats
import DTKernels
import DTParallel

public final class VocabularyMatrix {
    public let rows: Int, cols: Int
    /// Rows per chunk (the last may be shorter); `rows` when held as one fp32 matrix.
    public let chunkRows: Int
    let chunks: [FrozenMatrix]

    /// fp32 rows for `lookup` when the chunks hold the products' bf16 copy: embeddings are looked up in
    /// fp32 (as autocast leaves them) while the tied LM head multiplies in bf16.
    let lookupRows: FrozenMatrix?

    /// `whole` is the full (V, C) matrix as stored; `chunkRows` = V keeps it in one piece.
    init(_ whole: FrozenMatrix, chunkRows: Int, lookup: FrozenMatrix? = nil, transform: (FrozenMatrix) -> FrozenMatrix) {
        rows = whole.rows; cols = whole.cols
        lookupRows = lookup
        let step = max(1, min(chunkRows, whole.rows))
        self.chunkRows = step
        guard step < whole.rows else { chunks = [transform(whole)]; return }
        chunks = stride(from: 0, to: whole.rows, by: step).map { r0 in
            transform(whole.rowSlice(r0..<min(r0 + step, whole.rows)))
        }
    }

    public var storedBytes: Int {
        chunks.reduce(0) { $0 + ($1 === lookupRows ? 0 : $1.storedBytes) } + (lookupRows?.storedBytes ?? 0)
    }

    /// The fp32 matrix when held in one dense piece (LoRA), else nil.
    public var densePointer: UnsafePointer<Float>? { lookupRows?.densePointer ?? (chunks.count == 1 ? chunks[0].densePointer : nil) }

    @inline(__always) func chunkRange(_ i: Int) -> Range<Int> { (i * chunkRows)..<min((i + 1) * chunkRows, rows) }

    /// A chunk as fp32: its own storage, or dequantized (gathered first when sharded) into `scratch`.
    @inline(__always) func dense(_ i: Int, scratch: ProductScratch) -> UnsafePointer<Float> {
        if let p = chunks[i].densePointer { return p }
        Profile.measure("dequantize") { chunks[i].dense(into: scratch.weights.pointer) }
        return UnsafePointer(scratch.weights.pointer)
    }

    /// out (n, C) row r = row ids[r] of the matrix. Rows are read straight from their chunk's storage when it
    /// allows; sharded chunks are gathered whether or not this rank needs a row of them (collective).
    public func lookup(_ ids: UnsafePointer<Int32>, count n: Int, into out: UnsafeMutablePointer<Float>, scratch: ProductScratch) {
        for r in 0..<n { precondition(ids[r] >= 0 && Int(ids[r]) < rows, "token id \(ids[r]) outside the vocabulary") }
        if let lookupRows {
            for r in 0..<n { lookupRows.denseRow(Int(ids[r]), into: out + r * cols) }
            return
        }
        for i in chunks.indices {
            let range = chunkRange(i), chunk = chunks[i]
            var wanted = false
            for r in 0..<n where range.contains(Int(ids[r])) { wanted = true; break }
            if chunk.isSharded || (wanted && !chunk.readsRowsDirectly) {
                let dense = self.dense(i, scratch: scratch)
                for r in 0..<n where range.contains(Int(ids[r])) {
                    (out + r * cols).update(from: dense + (Int(ids[r]) - range.lowerBound) * cols, count: cols)
                }
            } else if wanted {
                for r in 0..<n where range.contains(Int(ids[r])) { chunk.denseRow(Int(ids[r]) - range.lowerBound, into: out + r * cols) }
            }
        }
    }

    /// out (n, V) with leading dimension `ldo` = x (n, C) · Wᵀ, one product per chunk.
    public func forward(_ x: UnsafePointer<Float>, rows n: Int, into out: UnsafeMutablePointer<Float>, ldo: Int, scratch: ProductScratch) {
        for i in chunks.indices {
            chunks[i].forward(x, rows: n, into: out + chunkRange(i).lowerBound, ldy: ldo, inputAlreadyRounded: i > 0, scratch: scratch)
        }
    }

    /// dx (n, C) = dy (n, V) · W, one product per chunk (no gradient for W: it is frozen).
    public func backward(_ dy: UnsafePointer<Float>, rows n: Int, dx: UnsafeMutablePointer<Float>, scratch: ProductScratch) {
        for i in chunks.indices {
            chunks[i].backward(dy + chunkRange(i).lowerBound, lddy: rows, rows: n, into: dx, accumulate: i > 0, scratch: scratch)
        }
    }
}

extension FrozenMatrix {
    /// Rows r0..<r1 of an unpermuted matrix held dense or as stored blocks (sharing the storage).
    func rowSlice(_ range: Range<Int>) -> FrozenMatrix {
        precondition(permutedHeads == nil, "row slices of permuted matrices are not needed")
        switch storage {
        case .dense(let b):
            let slice = FloatBuffer(count: range.count * cols, zeroed: false)
            slice.pointer.update(from: b.pointer + range.lowerBound * cols, count: range.count * cols)
            return FrozenMatrix(rows: range.count, cols: cols, storage: .dense(slice), compute: compute)
        case .bf16(let b):
            let slice = BF16Buffer(count: range.count * cols)
            slice.pointer.update(from: b.pointer + range.lowerBound * cols, count: range.count * cols)
            return FrozenMatrix(rows: range.count, cols: cols, storage: .bf16(slice), compute: compute)
        case .quantized(let type, let raw, let owner):
            let rowBytes = type.byteCount(elements: cols)!
            return FrozenMatrix(rows: range.count, cols: cols, storage: .quantized(type, raw + range.lowerBound * rowBytes, owner: owner),
                                compute: compute)
        case .nf4, .sharded:
            preconditionFailure("row slices are taken before quantizing or sharding")
        }
    }

    var isSharded: Bool { if case .sharded = storage { return true } else { return false } }

    /// Whether `denseRow` can read one row without dequantizing the whole matrix.
    var readsRowsDirectly: Bool {
        switch storage {
        case .dense, .bf16, .quantized: return true
        case .nf4, .sharded: return false
        }
    }

    /// One row (HF order) as fp32; only for storages with `readsRowsDirectly`.
    func denseRow(_ r: Int, into out: UnsafeMutablePointer<Float>) {
        switch storage {
        case .dense(let b):
            out.update(from: b.pointer + r * cols, count: cols)
        case .bf16(let b):
            BF16.toFloat(b.pointer + r * cols, into: out, count: cols)
        case .quantized(let type, let raw, _):
            precondition(permutedHeads == nil)
            let rowBytes = type.byteCount(elements: cols)!
            Dequantize.run(type, raw + r * rowBytes, out, count: cols)
        case .nf4, .sharded:
            preconditionFailure("denseRow needs dense or stored rows")
        }
    }
}
