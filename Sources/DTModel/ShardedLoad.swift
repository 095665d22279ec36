// Loading a sharded base (placement: sharded on N > 1 ranks): each rank reads from the model file only the
// stored bytes its 1/N share of a matrix needs, and converts only those, so N nodes together load a base none of
// them could read alone. The share is the byte range of the converted payload that ShardedPayload keeps — fp32
// or bf16 HF rows, GGUF blocks, NF4 code blocks — and its bytes equal that range of the whole matrix converted
// on one rank. NF4 quantized at load is the one collective step: the double quantization's offset is the mean of
// every block's absmax, so the ranks all-gather their blocks' absmax (4 bytes per 64 weights) before each
// encodes its own blocks.
import DTFormats
import DTKernels
import DTParallel

extension FrozenMatrix {
    /// This rank's share of the matrix, which is stored rows of a model file (`.quantized`, a view of the map),
    /// as `precision` keeps it with products in `compute`; `bytesRead` counts the stored bytes read for it.
    /// Collective for NF4: every rank calls it for the same matrices in the same order.
    func loadShare(precision: WeightPrecision, compute: ComputePrecision, comm: Communicator,
                   scratch: GatherScratch) -> (matrix: FrozenMatrix, bytesRead: Int) {
        guard case .quantized(let type, let raw, _) = storage else { preconditionFailure("loadShare reads stored blocks") }
        let rowBytes = type.byteCount(elements: cols)!
        var bytesRead = 0
        let payload: ShardedPayload
        switch precision {
        case .fp32 where compute == .fp32:
            payload = ShardedPayload(kind: .f32, total: rows * cols * 4, unit: cols * 4, comm: comm, scratch: scratch) { share, bytes in
                let hfRows = (bytes.lowerBound / (cols * 4))..<(bytes.upperBound / (cols * 4))
                denseRows(hfRows, into: share.baseAddress!.assumingMemoryBound(to: Float.self))
                bytesRead = hfRows.count * rowBytes
            }
        case .fp32:
            payload = ShardedPayload(kind: .bf16, total: rows * cols * 2, unit: cols * 2, comm: comm, scratch: scratch) { share, bytes in
                let hfRows = (bytes.lowerBound / (cols * 2))..<(bytes.upperBound / (cols * 2))
                denseBF16Rows(hfRows, into: share.baseAddress!.assumingMemoryBound(to: UInt16.self))
                bytesRead = hfRows.count * rowBytes
            }
        case .nf4 where (rows * cols) % NF4.blockSize == 0:
            payload = nf4Share(rowBytes: rowBytes, comm: comm, scratch: scratch, bytesRead: &bytesRead)
        case .asStored, .nf4:
            let stored = UnsafeRawBufferPointer(start: raw, count: type.byteCount(elements: rows * cols)!)
            payload = ShardedPayload(kind: .ggml(type, permutedHeads: permutedHeads), total: stored.count, unit: type.blockBytes,
                                     comm: comm, scratch: scratch) { share, bytes in
                share.copyMemory(from: UnsafeRawBufferPointer(rebasing: stored[bytes]))
                bytesRead = bytes.count
            }
        }
        return (FrozenMatrix(rows: rows, cols: cols, storage: .sharded(payload), compute: compute), bytesRead)
    }

    /// NF4 with double quantization of this rank's blocks: the values of its share (HF order) are dequantized from
    /// the rows covering them, their block absmax all-gathered, and its codes encoded against them.
    private func nf4Share(rowBytes: Int, comm: Communicator, scratch: GatherScratch, bytesRead: inout Int) -> ShardedPayload {
        let count = rows * cols, blocks = count / NF4.blockSize, unit = NF4.blockSize / 2
        let (shareBytes, bytes) = ShardedPayload.shareRange(total: count / 2, unit: unit, comm: comm)
        let shareBlocks = shareBytes / unit, localBlocks = bytes.count / unit
        let first = bytes.lowerBound * 2                     // first element of the share
        let hfRows = (first / cols)..<((first + localBlocks * NF4.blockSize + cols - 1) / cols)
        let values = FloatBuffer(count: max(hfRows.count * cols, 1), zeroed: false)   // (rows covering the share, C)
        defer { withExtendedLifetime(values) {} }
        if localBlocks > 0 {
            denseRows(hfRows, into: values.pointer)
            bytesRead = hfRows.count * rowBytes
        }
        let mine = UnsafePointer(values.pointer + (first - hfRows.lowerBound * cols))
        var absmax = [Float](repeating: 0, count: shareBlocks * comm.size)   // every rank's share of blocks, in order
        absmax.withUnsafeMutableBufferPointer { all in
            let local = all.baseAddress! + comm.rank * shareBlocks
            Parallel.ranges(localBlocks, minimumPerWorker: 1024) { _, range in
                NF4.blockAbsmax(mine + range.lowerBound * NF4.blockSize, blocks: range.count, into: local + range.lowerBound)
            }
            comm.allGather(UnsafeRawBufferPointer(start: local, count: shareBlocks * 4), into: UnsafeMutableRawBufferPointer(all))
        }
        let scales = NF4.doubleQuantize(Array(absmax.prefix(blocks)))
        let t = NF4.Tensor(count: count, codes: [], quantizedAbsmax: scales.quantized, nestedAbsmax: scales.nested, offset: scales.offset)
        return ShardedPayload(kind: .nf4(t), total: count / 2, unit: unit, comm: comm, scratch: scratch) { share, _ in
            absmax.withUnsafeBufferPointer { all in
                let local = all.baseAddress! + comm.rank * shareBlocks
                let codes = share.baseAddress!.assumingMemoryBound(to: UInt8.self)
                Parallel.ranges(localBlocks, minimumPerWorker: 1024) { _, range in
                    NF4.encode(mine + range.lowerBound * NF4.blockSize, blocks: range.count, absmax: local + range.lowerBound,
                               into: codes + range.lowerBound * unit)
                }
            }
        }
    }
}

extension BitsandbytesWeight {
    /// This rank's share of a pre-quantized weight (rows, cols) as `precision` keeps it: its NF4 code blocks as
    /// stored, or (an fp32 base) its fp32 or bf16 rows dequantized from the code blocks covering them. `bytesRead`
    /// counts the codes read.
    func loadShare(rows: Int, cols: Int, precision: WeightPrecision, compute: ComputePrecision, comm: Communicator,
                   scratch: GatherScratch) -> (matrix: FrozenMatrix, bytesRead: Int) {
        let unit = NF4.blockSize / 2
        var bytesRead = 0
        let payload: ShardedPayload
        if precision == .fp32 {
            let elementBytes = compute == .bf16 ? 2 : 4
            payload = ShardedPayload(kind: compute == .bf16 ? .bf16 : .f32, total: rows * cols * elementBytes, unit: cols * elementBytes,
                                     comm: comm, scratch: scratch) { share, bytes in
                let first = bytes.lowerBound / elementBytes, count = bytes.count / elementBytes
                guard count > 0 else { return }
                let blocks = (first / NF4.blockSize)..<((first + count + NF4.blockSize - 1) / NF4.blockSize)
                let values = FloatBuffer(count: blocks.count * NF4.blockSize, zeroed: false)   // (blocks covering the share × 64)
                withExtendedLifetime(values) {
                    let codes = self.codes.baseAddress!.assumingMemoryBound(to: UInt8.self)
                    Parallel.ranges(blocks.count, minimumPerWorker: 256) { _, part in
                        NF4.dequantize(scales, codes: codes, start: (blocks.lowerBound + part.lowerBound) * NF4.blockSize,
                                       count: part.count * NF4.blockSize, into: values.pointer + part.lowerBound * NF4.blockSize)
                    }
                    let mine = UnsafePointer(values.pointer + (first - blocks.lowerBound * NF4.blockSize))
                    if compute == .bf16 {
                        BF16.convertHere(mine, into: share.baseAddress!.assumingMemoryBound(to: UInt16.self), count: count)
                    } else {
                        share.baseAddress!.assumingMemoryBound(to: Float.self).update(from: mine, count: count)
                    }
                }
                bytesRead = blocks.count * unit
            }
        } else {
            payload = ShardedPayload(kind: .nf4(scales), payload: codes, unit: unit, comm: comm, scratch: scratch)
            bytesRead = ShardedPayload.shareRange(total: codes.count, unit: unit, comm: comm).bytes.count
        }
        return (FrozenMatrix(rows: rows, cols: cols, storage: .sharded(payload), compute: compute), bytesRead)
    }
}
