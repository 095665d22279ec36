// A frozen weight matrix (rows = out, cols = in), held either as fp32 or in its stored quantized blocks.
// `dense(into:)` writes the fp32 rows in HF order, undoing llama.cpp's Q/K row permutation on the way.
import DTFormats
import DTKernels

public final class FrozenMatrix {
    public enum Storage {
        case dense(FloatBuffer)
        /// Raw blocks (rows × cols elements of `type`), kept alive by `owner` (a memory map or an array).
        case quantized(GGMLType, UnsafeRawPointer, owner: AnyObject)
        /// NF4 with double quantization (QLoRA), rows already in HF order.
        case nf4(NF4.Tensor)
        /// This rank's share of the stored bytes; gathered from all ranks when used.
        case sharded(ShardedPayload)
    }

    public let rows: Int, cols: Int
    public let storage: Storage
    /// If set, stored row r of head h is HF row permutedRowSource(r): llama.cpp's interleaved RoPE order.
    let permutedHeads: Int?

    public init(rows: Int, cols: Int, storage: Storage, permutedHeads: Int? = nil) {
        self.rows = rows; self.cols = cols; self.storage = storage; self.permutedHeads = permutedHeads
    }

    /// fp32 data if held dense (then `dense(into:)` is not needed).
    public var densePointer: UnsafePointer<Float>? {
        if case .dense(let b) = storage { return UnsafePointer(b.pointer) }
        return nil
    }

    public var storedBytes: Int {
        switch storage {
        case .dense: rows * cols * 4
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
        case .quantized(let type, let raw, _):
            let rowBytes = type.byteCount(elements: cols)!
            Parallel.ranges(rows, minimumPerWorker: 32) { _, range in
                for stored in range { Dequantize.run(type, raw + stored * rowBytes, out + hfRow(stored) * cols, count: cols) }
            }
        case .nf4(let t):
            t.codes.withUnsafeBufferPointer { Self.dequantizeNF4(t, codes: $0.baseAddress!, into: out) }
        case .sharded(let p):
            p.dense(rows: rows, cols: cols, into: out)
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
        return FrozenMatrix(rows: rows, cols: cols, storage: .nf4(NF4.quantize(dense.pointer, count: rows * cols)))
    }

    /// HF row index of stored row `r` (identity unless the rows are in llama.cpp's permuted order).
    /// llama.cpp: stored = h·D + 2i + j  holds  HF  h·D + j·D/2 + i.
    @inline(__always) func hfRow(_ r: Int) -> Int {
        guard let heads = permutedHeads else { return r }
        let d = rows / heads
        let h = r / d, within = r % d
        return h * d + (within % 2) * (d / 2) + within / 2
    }

    /// A dense fp32 copy in HF order.
    public func densified() -> FrozenMatrix {
        if case .dense = storage, permutedHeads == nil { return self }
        let b = FloatBuffer(count: rows * cols, zeroed: false)
        dense(into: b.pointer)
        return FrozenMatrix(rows: rows, cols: cols, storage: .dense(b))
    }
}
