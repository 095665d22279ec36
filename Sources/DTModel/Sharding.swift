// ZeRO-3-style placement of the frozen base: each rank keeps 1/N of every projection's stored bytes
// (block-aligned: GGUF blocks, NF4 code blocks or fp32 rows), and the whole matrix is all-gathered into one
// shared byte scratch right before use — in forward and again in backward — then dequantized into the fp32
// scratch and dropped. Memory per rank ≈ base / N + one layer.
import Dispatch
import DTFormats
import DTKernels
import DTParallel

public enum Placement: String, Sendable, CaseIterable {
    /// Every rank holds the whole base (a GGUF's memory map is shared by the ranks of a node).
    case replicated
    /// Every rank holds 1/N of each projection; layers are all-gathered just before use.
    case sharded
}

/// The byte buffer all sharded matrices gather into (sized for the largest), shared by the whole model, and
/// what the gathers cost: their number, the bytes this rank received from the others, and their wall time.
public final class GatherScratch {
    var bytes: UnsafeMutableRawBufferPointer
    public private(set) var gathers = 0, receivedBytes = 0, seconds = 0.0
    init() { bytes = UnsafeMutableRawBufferPointer(start: nil, count: 0) }
    func reserve(_ n: Int) {
        guard n > bytes.count else { return }
        bytes.deallocate()
        bytes = .allocate(byteCount: n, alignment: 64)
    }
    func counted(received: Int, nanoseconds: UInt64) {
        gathers += 1; receivedBytes += received; seconds += Double(nanoseconds) * 1e-9
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
    convenience init(kind: Kind, payload: UnsafeRawBufferPointer, unit: Int, comm: Communicator, scratch: GatherScratch) {
        self.init(kind: kind, total: payload.count, unit: unit, comm: comm, scratch: scratch) { share, range in
            share.copyMemory(from: UnsafeRawBufferPointer(rebasing: payload[range]))
        }
    }

    /// Keeps this rank's share of a payload of `total` bytes (units of `unit` bytes never split), which
    /// `fill(destination, range)` writes: bytes `range` of the payload, read and converted for this rank alone.
    init(kind: Kind, total: Int, unit: Int, comm: Communicator, scratch: GatherScratch,
         fill: (UnsafeMutableRawBufferPointer, Range<Int>) -> Void) {
        self.kind = kind; self.comm = comm; self.scratch = scratch
        self.total = total
        let range = Self.shareRange(total: total, unit: unit, comm: comm)
        share = range.share
        local = .allocate(byteCount: max(share, 1), alignment: 64)
        local.initializeMemory(as: UInt8.self, repeating: 0)
        if !range.bytes.isEmpty { fill(UnsafeMutableRawBufferPointer(rebasing: local[0..<range.bytes.count]), range.bytes) }
        scratch.reserve(share * comm.size)
    }

    /// The bytes of a `total`-byte payload this rank keeps: shares of ⌈units / N⌉ whole units in rank order (the
    /// last ranks' may be short or empty), and the padded share size every rank gathers.
    static func shareRange(total: Int, unit: Int, comm: Communicator) -> (share: Int, bytes: Range<Int>) {
        let units = (total + unit - 1) / unit
        let share = (units + comm.size - 1) / comm.size * unit
        let start = min(comm.rank * share, total)
        return (share, start..<min(start + share, total))
    }

    deinit { local.deallocate() }

    var holdsBF16: Bool { if case .bf16 = kind { return true } else { return false } }

    /// All-gathers the full payload into the shared scratch and returns it (raw bytes in stored order).
    private func gather() -> UnsafeRawPointer {
        let gathered = UnsafeMutableRawBufferPointer(rebasing: scratch.bytes[0..<(share * comm.size)])
        let start = DispatchTime.now().uptimeNanoseconds
        comm.allGather(UnsafeRawBufferPointer(rebasing: local[0..<share]), into: gathered)
        scratch.counted(received: share * (comm.size - 1), nanoseconds: DispatchTime.now().uptimeNanoseconds - start)
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
