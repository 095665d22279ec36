// ZeRO-3-style placement of the frozen base: each rank keeps 1/N of every projection's stored bytes
// (block-aligned: GGUF blocks, NF4 code blocks or fp32 rows), and the whole matrix is all-gathered into one
// shared byte scratch right before use — in forward and again in backward — then dequantized into the fp32
// scratch and dropped. Memory per rank ≈ base / N + one layer.
import DTFormats
import DTKernels
import DTParallel

public enum Placement: String, Sendable, CaseIterable {
    /// Every rank holds the whole base (a GGUF's memory map is shared by the ranks of a node).
    case replicated
    /// Every rank holds 1/N of each projection; layers are all-gathered just before use.
    case sharded
}

/// The byte buffer all sharded matrices gather into (sized for the largest), shared by the whole model.
public final class GatherScratch {
    var bytes: UnsafeMutableRawBufferPointer
    init() { bytes = UnsafeMutableRawBufferPointer(start: nil, count: 0) }
    func reserve(_ n: Int) {
        guard n > bytes.count else { return }
        bytes.deallocate()
        bytes = .allocate(byteCount: n, alignment: 64)
    }
    deinit { bytes.deallocate() }
}

public final class ShardedPayload {
    public enum Kind {
        case ggml(GGMLType, permutedHeads: Int?)
        case nf4(NF4.Tensor)      // scales replicated (small); its codes are what is sharded
        case f32
        case bf16
    }
    let kind: Kind
    let local: UnsafeMutableRawBufferPointer   // this rank's share (padded to `share` bytes)
    let share: Int, total: Int
    let comm: Communicator
    let scratch: GatherScratch

    /// Keeps this rank's share of `payload` (total bytes, in units of `unit` bytes that must not be split).
    init(kind: Kind, payload: UnsafeRawBufferPointer, unit: Int, comm: Communicator, scratch: GatherScratch) {
        self.kind = kind; self.comm = comm; self.scratch = scratch
        total = payload.count
        let units = (total + unit - 1) / unit
        share = (units + comm.size - 1) / comm.size * unit
        local = .allocate(byteCount: max(share, 1), alignment: 64)
        local.initializeMemory(as: UInt8.self, repeating: 0)
        let start = min(comm.rank * share, total), end = min(start + share, total)
        if end > start { UnsafeMutableRawBufferPointer(rebasing: local[0..<(end - start)]).copyMemory(from: UnsafeRawBufferPointer(rebasing: payload[start..<end])) }
        scratch.reserve(share * comm.size)
    }

    deinit { local.deallocate() }

    var holdsBF16: Bool { if case .bf16 = kind { return true } else { return false } }

    /// All-gathers the full payload into the shared scratch and returns it (raw bytes in stored order).
    private func gather() -> UnsafeRawPointer {
        let gathered = UnsafeMutableRawBufferPointer(rebasing: scratch.bytes[0..<(share * comm.size)])
        comm.allGather(UnsafeRawBufferPointer(rebasing: local[0..<share]), into: gathered)
        return UnsafeRawPointer(gathered.baseAddress!)
    }

    /// All-gathers a bf16 matrix and returns it in place in the gather scratch (valid until the next gather).
    func gatherBF16() -> UnsafePointer<UInt16> {
        precondition(holdsBF16)
        return gather().assumingMemoryBound(to: UInt16.self)
    }

    /// All-gathers the full payload and writes the (rows, cols) matrix rounded to bf16 in HF row order.
    func denseBF16(rows: Int, cols: Int, into out: UnsafeMutablePointer<UInt16>) {
        let raw = gather()
        switch kind {
        case .bf16:
            out.update(from: raw.assumingMemoryBound(to: UInt16.self), count: rows * cols)
        case .f32:
            BF16.convert(raw.assumingMemoryBound(to: Float.self), ld: cols, into: out, rows: rows, cols: cols)
        case .nf4(let t):
            FrozenMatrix.dequantizeNF4(t, codes: raw.assumingMemoryBound(to: UInt8.self), intoBF16: out)
        case .ggml(let type, let heads):
            FrozenMatrix(rows: rows, cols: cols, storage: .quantized(type, raw, owner: scratch), permutedHeads: heads).denseBF16(into: out)
        }
    }

    /// All-gathers the full payload and dequantizes the (rows, cols) matrix in HF row order into `out`.
    func dense(rows: Int, cols: Int, into out: UnsafeMutablePointer<Float>) {
        let raw = gather()
        switch kind {
        case .f32:
            UnsafeMutableRawPointer(out).copyMemory(from: raw, byteCount: rows * cols * 4)
        case .bf16:
            BF16.toFloat(raw.assumingMemoryBound(to: UInt16.self), into: out, count: rows * cols)
        case .nf4(let t):
            FrozenMatrix.dequantizeNF4(t, codes: raw.assumingMemoryBound(to: UInt8.self), into: out)
        case .ggml(let type, let heads):
            FrozenMatrix(rows: rows, cols: cols, storage: .quantized(type, raw, owner: scratch), permutedHeads: heads).dense(into: out)
        }
    }

    /// Bytes this rank holds.
    var bytesHeld: Int {
        switch kind {
        case .nf4(let t): share + t.quantizedAbsmax.count + t.nestedAbsmax.count * 4
        default: share
        }
    }
}

extension FrozenMatrix {
    /// This matrix with only this rank's share of its stored bytes kept.
    func sharded(comm: Communicator, scratch: GatherScratch) -> FrozenMatrix {
        let payload: ShardedPayload
        switch storage {
        case .dense(let b):
            payload = ShardedPayload(kind: .f32, payload: UnsafeRawBufferPointer(start: b.pointer, count: rows * cols * 4),
                                     unit: cols * 4, comm: comm, scratch: scratch)
        case .bf16(let b):
            payload = ShardedPayload(kind: .bf16, payload: UnsafeRawBufferPointer(start: b.pointer, count: rows * cols * 2),
                                     unit: cols * 2, comm: comm, scratch: scratch)
        case .quantized(let type, let raw, _):
            payload = ShardedPayload(kind: .ggml(type, permutedHeads: permutedHeads),
                                     payload: UnsafeRawBufferPointer(start: raw, count: type.byteCount(elements: rows * cols)!),
                                     unit: type.blockBytes, comm: comm, scratch: scratch)
        case .nf4(let t):
            var scales = t
            scales.codes = []
            payload = t.codes.withUnsafeBytes {
                ShardedPayload(kind: .nf4(scales), payload: $0, unit: NF4.blockSize / 2, comm: comm, scratch: scratch)
            }
        case .sharded:
            return self
        }
        return FrozenMatrix(rows: rows, cols: cols, storage: .sharded(payload), compute: compute)
    }
}
