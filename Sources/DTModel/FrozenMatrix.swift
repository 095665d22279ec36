// A frozen weight matrix W (rows = out, cols = in) and the one place that multiplies by it. It owns the
// storage switch — fp32, bf16 (converted once at load), GGUF blocks, NF4, a rank's shard — and the
// precision of its products: `forward` (y = x · Wᵀ) and `backward` (dx = dy · W) run in fp32 through
// OpenBLAS or in bf16 with fp32 accumulation through oneDNN, dequantizing per use into the product scratch.
// Values are in HF row order: llama.cpp's Q/K row permutation is undone whenever rows are produced.
import DTFormats
import DTKernels

public final class FrozenMatrix {
    public enum Storage {
        case dense(FloatBuffer)
        /// fp32 values rounded to bf16 once at load (compute: bf16), HF row order.
        case bf16(BF16Buffer)
        /// Raw blocks (rows × cols elements of `type`), kept alive by `owner` (a memory map or an array).
        case quantized(GGMLType, UnsafeRawPointer, owner: AnyObject)
        /// NF4 with double quantization (QLoRA), rows already in HF order.
        case nf4(NF4.Tensor)
        /// This rank's share of the stored bytes; gathered from all ranks when used.
        case sharded(ShardedPayload)
    }

    public let rows: Int, cols: Int
    public let storage: Storage
    /// The precision of this matrix's products (stored blocks are dequantized to it per use).
    public let compute: ComputePrecision
    /// If set, stored row r of head h is HF row permutedRowSource(r): llama.cpp's interleaved RoPE order.
    let permutedHeads: Int?

    public init(rows: Int, cols: Int, storage: Storage, compute: ComputePrecision = .fp32, permutedHeads: Int? = nil) {
        self.rows = rows; self.cols = cols; self.storage = storage; self.compute = compute; self.permutedHeads = permutedHeads
    }

    // MARK: products (forward and backward side by side)

    /// y (n, rows) with leading dimension `ldy` = x (n, cols) · Wᵀ (+ y when `accumulate`). With
    /// `inputAlreadyRounded` the caller promises that the previous product rounded this same x into the scratch
    /// (q/k/v share one input, gate/up another, the LM head's chunks one).
    public func forward(_ x: UnsafePointer<Float>, rows n: Int, into y: UnsafeMutablePointer<Float>, ldy: Int? = nil,
                        accumulate: Bool = false, inputAlreadyRounded: Bool = false, scratch: ProductScratch) {
        let weight = operand(scratch)   // gathers a sharded weight: every rank, even one with no rows
        guard n > 0 else { return }
        switch weight {
        case .f32(let w):
            BLAS.gemm(.noTrans, .trans, m: n, n: rows, k: cols, a: x, lda: cols, b: w, ldb: cols,
                      beta: accumulate ? 1 : 0, c: y, ldc: ldy ?? rows)
        case .bf16(let w):
            let xb = inputAlreadyRounded ? UnsafePointer(scratch.input.pointer) : scratch.roundedInput(x, ld: cols, rows: n, cols: cols)
            BF16.gemm(.noTrans, .trans, m: n, n: rows, k: cols, a: xb, lda: cols, b: w, ldb: cols,
                      accumulate: accumulate, c: y, ldc: ldy ?? rows)
        }
    }

    /// dx (n, cols) = dy (n, rows) with leading dimension `lddy` · W (+ dx when `accumulate`). W gets no gradient.
    public func backward(_ dy: UnsafePointer<Float>, lddy: Int? = nil, rows n: Int, into dx: UnsafeMutablePointer<Float>,
                         accumulate: Bool = false, scratch: ProductScratch) {
        let weight = operand(scratch)
        guard n > 0 else { return }
        switch weight {
        case .f32(let w):
            BLAS.gemm(.noTrans, .noTrans, m: n, n: cols, k: rows, a: dy, lda: lddy ?? rows, b: w, ldb: cols,
                      beta: accumulate ? 1 : 0, c: dx, ldc: cols)
        case .bf16(let w):
            let dyb = scratch.roundedInput(dy, ld: lddy ?? rows, rows: n, cols: rows)
            BF16.gemm(.noTrans, .noTrans, m: n, n: cols, k: rows, a: dyb, lda: rows, b: w, ldb: cols,
                      accumulate: accumulate, c: dx, ldc: cols)
        }
    }

    enum Operand { case f32(UnsafePointer<Float>), bf16(UnsafePointer<UInt16>) }

    /// The weight in the product's precision: its own storage, or dequantized (gathered first when sharded)
    /// into the scratch.
    func operand(_ scratch: ProductScratch) -> Operand {
        switch storage {
        case .dense(let b): return .f32(b.pointer)
        case .bf16(let b): return .bf16(b.pointer)
        case .sharded(let p) where p.holdsBF16:
            return .bf16(Profile.measure("dequantize") { p.gatherBF16() })
        default:
            if compute == .bf16 {
                precondition(scratch.weightsBF16.count >= rows * cols, "product scratch smaller than a \(rows) × \(cols) weight")
                Profile.measure("dequantize") { denseBF16(into: scratch.weightsBF16.pointer) }
                return .bf16(scratch.weightsBF16.pointer)
            }
            precondition(scratch.weights.count >= rows * cols, "product scratch smaller than a \(rows) × \(cols) weight")
            Profile.measure("dequantize") { dense(into: scratch.weights.pointer) }
            return .f32(scratch.weights.pointer)
        }
    }

    /// Writes the (rows, cols) matrix rounded to bf16, in HF row order, into `out`: stored blocks are
    /// dequantized a row (or a run of NF4 blocks) at a time into a cache-sized buffer and rounded from there,
    /// so no fp32 copy of the whole matrix is written and read back.
    func denseBF16(into out: UnsafeMutablePointer<UInt16>) {
        switch storage {
        case .bf16(let b):
            out.update(from: b.pointer, count: rows * cols)
        case .quantized:
            denseBF16Rows(0..<rows, into: out)
        case .nf4(let t):
            t.codes.withUnsafeBufferPointer { Self.dequantizeNF4(t, codes: $0.baseAddress!, intoBF16: out) }
        case .dense(let b):
            BF16.convert(b.pointer, ld: cols, into: out, rows: rows, cols: cols)
        case .sharded(let p):
            p.denseBF16(rows: rows, cols: cols, into: out)
        }
    }

    /// NF4 blocks dequantized and rounded to bf16 in runs of 64 blocks, on all of this rank's workers.
    static func dequantizeNF4(_ t: NF4.Tensor, codes: UnsafePointer<UInt8>, intoBF16 out: UnsafeMutablePointer<UInt16>) {
        let run = 64 * NF4.blockSize
        let vector = CPUFeatures.avx512BF16
        Parallel.ranges((t.count + run - 1) / run, minimumPerWorker: 4) { _, runs in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: run) { staging in
                NF4.codebook.withUnsafeBufferPointer { book in
                    for r in runs {
                        let start = r * run, count = min(run, t.count - start)
                        if vector {   // staging holds the run's block scales here
                            let first = start / NF4.blockSize, blocks = count / NF4.blockSize
                            NF4.blockScales(t, blocks: first..<(first + blocks), into: staging.baseAddress!)
                            BF16.fromNF4(codes: codes + start / 2, scales: staging.baseAddress!, blocks: blocks,
                                         codebook: book.baseAddress!, into: out + start)
                        } else {
                            NF4.dequantize(t, codes: codes, start: start, count: count, into: staging.baseAddress!)
                            BF16.convertHere(staging.baseAddress!, into: out + start, count: count)
                        }
                    }
                }
            }
        }
    }

    // MARK: storage

    /// fp32 data if held dense (then `dense(into:)` is not needed).
    public var densePointer: UnsafePointer<Float>? {
        if case .dense(let b) = storage { return UnsafePointer(b.pointer) }
        return nil
    }

    public var storedBytes: Int {
        switch storage {
        case .dense: rows * cols * 4
        case .bf16: rows * cols * 2
        case .quantized(let type, _, _): type.byteCount(elements: rows * cols)!
        case .nf4(let t): t.bytes
        case .sharded(let p): p.bytesHeld
        }
    }

    /// Writes the (rows, cols) fp32 matrix in HF row order into `out`.
    public func dense(into out: UnsafeMutablePointer<Float>) {
        switch storage {
        case .dense(let b):
            out.update(from: b.pointer, count: rows * cols)
        case .bf16(let b):
            BF16.toFloat(b.pointer, into: out, count: rows * cols)
        case .quantized:
            denseRows(0..<rows, into: out)
        case .nf4(let t):
            t.codes.withUnsafeBufferPointer { Self.dequantizeNF4(t, codes: $0.baseAddress!, into: out) }
        case .sharded(let p):
            p.dense(rows: rows, cols: cols, into: out)
        }
    }

    /// HF rows `hfRows` of stored blocks as fp32, (hfRows.count, cols) into `out`: only their stored rows are read.
    func denseRows(_ hfRows: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        guard case .quantized(let type, let raw, _) = storage else { preconditionFailure("denseRows reads stored blocks") }
        let rowBytes = type.byteCount(elements: cols)!
        Parallel.ranges(hfRows.count, minimumPerWorker: 32) { _, range in
            for i in range { Dequantize.run(type, raw + storedRow(hfRows.lowerBound + i) * rowBytes, out + i * cols, count: cols) }
        }
    }

    /// HF rows `hfRows` of stored blocks rounded to bf16, (hfRows.count, cols) into `out`, a row at a time through a
    /// cache-sized buffer (Q4_1 and Q8_0 straight to bf16 with AVX512-BF16): no fp32 copy of the whole is made.
    func denseBF16Rows(_ hfRows: Range<Int>, into out: UnsafeMutablePointer<UInt16>) {
        guard case .quantized(let type, let raw, _) = storage else { preconditionFailure("denseBF16Rows reads stored blocks") }
        let rowBytes = type.byteCount(elements: cols)!
        let vector = CPUFeatures.avx512BF16 && (type == .q4_1 || type == .q8_0)
        Parallel.ranges(hfRows.count, minimumPerWorker: 32) { _, range in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: cols) { row in
                for i in range {
                    let source = raw + storedRow(hfRows.lowerBound + i) * rowBytes, target = out + i * cols
                    if vector {
                        if type == .q4_1 { BF16.fromQ4_1(source, blocks: cols / type.blockSize, into: target) }
                        else { BF16.fromQ8_0(source, blocks: cols / type.blockSize, into: target) }
                    } else {
                        Dequantize.run(type, source, row.baseAddress!, count: cols)
                        BF16.convertHere(row.baseAddress!, into: target, count: cols)
                    }
                }
            }
        }
    }

    /// NF4 blocks dequantized on all of this rank's workers.
    static func dequantizeNF4(_ t: NF4.Tensor, codes: UnsafePointer<UInt8>, into out: UnsafeMutablePointer<Float>) {
        Parallel.ranges(t.count / NF4.blockSize, minimumPerWorker: 256) { _, blocks in
            NF4.dequantize(t, codes: codes, start: blocks.lowerBound * NF4.blockSize, count: blocks.count * NF4.blockSize,
                           into: out + blocks.lowerBound * NF4.blockSize)
        }
    }

    /// This matrix quantized to NF4 with double quantization (from its fp32 values in HF order); itself if NF4.
    public func quantizedNF4() -> FrozenMatrix {
        if case .nf4 = storage { return self }   // already NF4 (a bitsandbytes checkpoint): never quantize twice
        let dense = FloatBuffer(count: rows * cols, zeroed: false)
        self.dense(into: dense.pointer)
        let t = NF4.quantize(dense.pointer, count: rows * cols) { blocks, body in
            Parallel.ranges(blocks, minimumPerWorker: 1024) { _, range in body(range) }
        }
        return FrozenMatrix(rows: rows, cols: cols, storage: .nf4(t), compute: compute)
    }

    /// Whether the products read bytes kept alive by `owner` (a mapped model file): stored blocks used as they are.
    func pointsInto(_ owner: AnyObject) -> Bool {
        if case .quantized(_, _, let o) = storage { return o === owner }
        return false
    }

    /// The same storage with products in `compute` precision.
    public func computing(in compute: ComputePrecision) -> FrozenMatrix {
        FrozenMatrix(rows: rows, cols: cols, storage: storage, compute: compute, permutedHeads: permutedHeads)
    }

    /// The stored row holding HF row `r` (identity unless the rows are in llama.cpp's permuted order).
    @inline(__always) func storedRow(_ r: Int) -> Int {
        guard let heads = permutedHeads else { return r }
        return LlamaCppRowOrder.storedRow(r, rows: rows, heads: heads)
    }

    /// A resident copy in HF order for products in `compute`: fp32, or rounded to bf16 once.
    public func resident(_ compute: ComputePrecision = .fp32) -> FrozenMatrix {
        switch (storage, compute) {
        case (.dense, .fp32) where permutedHeads == nil, (.bf16, .bf16): return self
        default: break
        }
        let b = FloatBuffer(count: rows * cols, zeroed: false)
        dense(into: b.pointer)
        guard compute == .bf16 else { return FrozenMatrix(rows: rows, cols: cols, storage: .dense(b)) }
        return FrozenMatrix(rows: rows, cols: cols, storage: .bf16(BF16Buffer(b.pointer, count: rows * cols)), compute: .bf16)
    }
}

/// The buffers products need besides their operands, allocated once per workspace: one projection (or
/// vocabulary chunk) dequantized to fp32 and to bf16, and the activations rounded to bf16 at a product's input.
public final class ProductScratch {
    public let weights: FloatBuffer      // (largest per-use weight) fp32
    public let weightsBF16: BF16Buffer   // (largest per-use weight) bf16
    public let input: BF16Buffer         // (rows, widest product input) bf16

    public init(weightElements: Int, bf16Weights: Bool, inputElements: Int) {
        weights = FloatBuffer(count: weightElements)
        weightsBF16 = BF16Buffer(count: bf16Weights ? weightElements : 0)
        input = BF16Buffer(count: inputElements)
    }

    private init(weights: FloatBuffer, weightsBF16: BF16Buffer, input: BF16Buffer) {
        self.weights = weights; self.weightsBF16 = weightsBF16; self.input = input
    }

    /// A scratch with this one's weight buffers and its own input buffer of `inputElements`: for a product an
    /// adapter makes with W inside `project`, between two products that share one rounded input (q/k/v).
    public func sharingWeights(inputElements: Int) -> ProductScratch {
        ProductScratch(weights: weights, weightsBF16: weightsBF16, input: BF16Buffer(count: inputElements))
    }

    /// Whether `other` uses this scratch's weight buffers.
    public func sharesWeights(with other: ProductScratch) -> Bool { weights === other.weights && weightsBF16 === other.weightsBF16 }

    /// x (rows, cols) with leading dimension `ld`, rounded to bf16 into `input` (contiguous).
    func roundedInput(_ x: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int) -> UnsafePointer<UInt16> {
        precondition(rows * cols <= input.count, "bf16 input scratch of \(input.count) for a (\(rows), \(cols)) input")
        Profile.measure("bf16 rounding") { BF16.convert(x, ld: ld, into: input.pointer, rows: rows, cols: cols) }
        return UnsafePointer(input.pointer)
    }

    public var bytes: Int { weights.count * 4 + weightsBF16.count * 2 + input.count * 2 }
}
