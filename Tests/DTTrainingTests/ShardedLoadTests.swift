// placement: sharded loads only a rank's share of each matrix: what it holds equals that part of the whole
// matrix converted on one rank, and what it reads from the model file is that part and no more.
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTTraining
import Foundation
import TestSupport
import XCTest

final class ShardedLoadTests: XCTestCase {
    /// Every frozen matrix of `m` as fp32 in HF order (gathered when sharded: collective), and the vocabulary
    /// matrices' rows looked up (with `vocabulary`).
    func matrices(_ m: LlamaModel, vocabulary: Bool) -> [[Float]] {
        var out: [[Float]] = []
        for layer in m.layers {
            for p in TensorNames.Projection.allCases {
                let w = layer.projections[p]!
                var v = [Float](repeating: 0, count: w.rows * w.cols)
                v.withUnsafeMutableBufferPointer { w.dense(into: $0.baseAddress!) }
                out.append(v)
            }
        }
        guard vocabulary else { return out }
        let V = m.config.vocabSize, ids = (0..<V).map(Int32.init)
        let scratch = m.makeProductScratch(rows: V)
        for matrix in [m.embedding] + (m.lmHead.map { [$0] } ?? []) {
            var rows = [Float](repeating: 0, count: V * m.config.hiddenSize)
            rows.withUnsafeMutableBufferPointer { matrix.lookup(ids, count: V, into: $0.baseAddress!, scratch: scratch) }
            out.append(rows)
        }
        return out
    }

    /// Invariant: on 3 and 4 ranks, every rank's shares gathered back give the matrices one rank converting
    /// whole matrices holds, bit for bit: HF fp32 rows, a GGUF with llama.cpp's permuted Q/K rows, and a
    /// bitsandbytes NF4 checkpoint; kept as fp32 (fp32 and bf16 products), as stored, and NF4 at load (whose
    /// double quantization needs every rank's block absmax). Shapes give uneven shares and ragged NF4 blocks.
    func testGatheredSharesEqualTheWholeConversion() throws {
        var shape = TinyModel.Shape(); shape.vocab = 70; shape.hidden = 64; shape.intermediate = 104; shape.heads = 4; shape.kvHeads = 2
        let hf = TinyModel.write(shape, seed: 5)
        let bnb = temporaryDirectory() + "/nf4"
        _ = try NF4Export.toHF(base: ModelSource(path: hf), dir: bnb, overwrite: false, maxShardBytes: 40_000)
        let gguf = TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/tiny/llama.gguf.bin"
        let cases: [(String, WeightPrecision, ComputePrecision)] = [
            (hf, .fp32, .fp32), (hf, .fp32, .bf16), (hf, .nf4, .fp32), (hf, .asStored, .bf16),
            (gguf, .fp32, .fp32), (gguf, .fp32, .bf16), (gguf, .nf4, .bf16), (gguf, .asStored, .fp32),
            (bnb, .nf4, .fp32), (bnb, .fp32, .fp32), (bnb, .fp32, .bf16),
        ]
        for (path, precision, compute) in cases {
            // A sharded bf16 copy also serves embedding lookups (in bf16); one rank looks them up in fp32.
            let vocabulary = !(precision == .fp32 && compute == .bf16)
            let whole = try LlamaModel(source: ModelSource(path: path), precision: precision, compute: compute)
            let expected = matrices(whole, vocabulary: vocabulary)
            for ranks in [3, 4] {
                let gathered = try ThreadedWorld(size: ranks).run { comm in
                    let m = try LlamaModel(source: ModelSource(path: path), precision: precision, compute: compute,
                                           placement: .sharded, comm: comm)
                    return (self.matrices(m, vocabulary: vocabulary), m.bytesRead)
                }
                let label = "\((path as NSString).lastPathComponent) \(precision) \(compute) on \(ranks) ranks"
                for (rank, got) in gathered.enumerated() {
                    XCTAssertEqual(got.0.count, expected.count, label)
                    for (i, (a, b)) in zip(got.0, expected).enumerated() where a != b {
                        XCTFail("\(label), rank \(rank): matrix \(i) differs from the whole conversion"); break
                    }
                }
                XCTAssertLessThan(gathered.map(\.1).max()!, whole.bytesRead, "\(label): a rank reads less than the whole base")
            }
        }
    }

    /// Invariant: the all-gather counters a sharded run prints count what the gathers moved: one gather per use of
    /// a matrix, and each rank receives the other N − 1 ranks' shares of ⌈rows / N⌉ fp32 rows.
    func testGatherTrafficCountsTheOtherRanksShares() throws {
        var shape = TinyModel.Shape(); shape.vocab = 70; shape.hidden = 64; shape.intermediate = 104; shape.heads = 4; shape.kvHeads = 2
        let dir = TinyModel.write(shape, seed: 6)
        let ranks = 4
        let traffic = try ThreadedWorld(size: ranks).run { comm in
            let m = try LlamaModel(source: ModelSource(path: dir), precision: .fp32, placement: .sharded, comm: comm)
            XCTAssertEqual(m.gatherTraffic.gathers, 0, "loading gathers nothing")
            _ = self.matrices(m, vocabulary: false)   // every projection gathered once
            var expected = 0
            for layer in m.layers {
                for p in TensorNames.Projection.allCases {
                    let w = layer.projections[p]!
                    expected += (w.rows + ranks - 1) / ranks * w.cols * 4 * (ranks - 1)
                }
            }
            return (m.gatherTraffic.gathers, m.gatherTraffic.receivedBytes, expected, m.layers.count)
        }
        for (gathers, received, expected, layers) in traffic {
            XCTAssertEqual(gathers, layers * TensorNames.Projection.allCases.count)
            XCTAssertEqual(received, expected)
        }
    }

    /// Invariant: a rank of N reads from the model file only its share of each matrix. While a matrix converts,
    /// the file pages this process has mapped stay within that share plus 8 MiB — large page-cache folios (up to
    /// 2 MiB) at the share's ends and around the header and norm vectors read between matrices — which is less
    /// than the whole matrix for q, o (16 MiB), gate, up and down (64 MiB); and `bytesRead` counts exactly the
    /// share's rows (fp32), or the rows covering its NF4 blocks.
    func testARankReadsOnlyItsShare() throws {
        var shape = TinyModel.Shape(); shape.vocab = 512; shape.hidden = 2048; shape.intermediate = 8192
        shape.layers = 1; shape.heads = 16; shape.kvHeads = 4
        let dir = TinyModel.write(shape, seed: 9), file = dir + "/model.safetensors"
        let (C, I, V, kv) = (2048, 8192, 512, 512)
        // The matrices in load order: embedding, LM head, then q, k, v, o, gate, up, down.
        let shapes = [(V, C), (V, C), (C, C), (kv, C), (kv, C), (C, C), (I, C), (I, C), (C, I)]
        let ranks = 4, rank = 1
        func shareRows(_ rows: Int) -> Int {
            let per = (rows + ranks - 1) / ranks
            return min(rows, (rank + 1) * per) - min(rows, rank * per)
        }
        for precision in [WeightPrecision.fp32, .nf4] {
            var mapped: [Int] = []
            let model = try LlamaModel(source: ModelSource(path: dir), precision: precision, placement: .sharded,
                                       comm: OneRankOfMany(rank: rank, size: ranks),
                                       progress: { _ in mapped.append(MappedResidency.kibibytes(of: file) * 1024) })
            XCTAssertEqual(mapped.count, shapes.count)
            var shares = 0, slack = 0
            for (i, (rows, cols)) in shapes.enumerated() {
                let share = shareRows(rows) * cols * 4
                shares += share
                slack += 2 * cols * 4   // NF4 blocks may start and end inside a row
                let bound = share + (8 << 20)
                if i >= 2 && i != 3 && i != 4 { XCTAssertLessThan(bound, rows * cols * 4, "the bound must be below the whole matrix") }
                XCTAssertLessThanOrEqual(mapped[i], bound, "\(precision): matrix \(i) (\(rows) × \(cols), \(rows * cols * 4 >> 20) MiB) mapped \(mapped[i] >> 10) KiB for a share of \(share >> 10) KiB")
            }
            if precision == .fp32 {
                XCTAssertEqual(model.bytesRead, shares)
            } else {
                XCTAssertGreaterThanOrEqual(model.bytesRead, shares - slack)
                XCTAssertLessThanOrEqual(model.bytesRead, shares + slack)
            }
        }
    }
}

/// One rank of a world of `size`, alone in this process: a gather fills every rank's slot with this rank's
/// bytes. What the others would have sent only changes values (NF4's offset), not which bytes a rank reads.
private final class OneRankOfMany: Communicator {
    let rank: Int, size: Int
    init(rank: Int, size: Int) { self.rank = rank; self.size = size }
    var localSize: Int { size }
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {}
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) {}
    func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) {
        for r in 0..<size { UnsafeMutableRawBufferPointer(rebasing: receive[(r * send.count)..<((r + 1) * send.count)]).copyMemory(from: send) }
    }
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {}
    func barrier() {}
    func abort(_ message: String, code: Int32) -> Never { fatalError(message) }
}

final class RowOrderTests: XCTestCase {
    /// Invariant: storedRow is hfRow's inverse (a rank reading HF rows finds the stored row that holds each).
    func testStoredRowInvertsHFRow() {
        for (rows, heads) in [(8, 1), (64, 4), (96, 12), (512, 8)] {
            let hf = (0..<rows).map { LlamaCppRowOrder.hfRow($0, rows: rows, heads: heads) }
            XCTAssertEqual(Set(hf).count, rows, "hfRow is a permutation")
            for r in 0..<rows { XCTAssertEqual(LlamaCppRowOrder.storedRow(hf[r], rows: rows, heads: heads), r, "\(rows) rows, \(heads) heads") }
        }
    }
}
