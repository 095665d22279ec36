// Sequence packing: several sequences in one row, positions restarting and attention kept inside each,
// against the same sequences one per row (padded) — the reference it must reproduce.
import DTKernels
import DTModel
import DTTraining
import Foundation
import TestSupport
import XCTest

final class PackingTests: XCTestCase {
    let sequences: [[Int32]] = [[1, 5, 9, 13, 2, 7, 11], [3, 8, 4], [6, 2], [10, 12, 14, 1, 3], [7]]

    func model() throws -> LlamaModel { try LlamaModel(source: ModelSource(path: TinyModel.write())) }

    func adapter(_ model: LlamaModel, rows: Int) -> LoRAAdapter {
        var options = LoRAOptions(); options.rank = 4; options.alpha = 8
        let adapter = LoRAAdapter(model: model, options: options, seed: 3)
        var rng = SeededRandom(seed: 9)
        for e in adapter.arena.entries where e.name.contains("lora_B") { adapter.arena.set(e.name, (0..<e.count).map { _ in 0.3 * rng.normal() }) }
        return adapter
    }

    /// Per-sequence loss (sum over its next-token targets) and the summed gradient, from logits laid out by
    /// `row(i, t)` = the workspace row of sequence i's token t.
    func lossesAndGradient(_ model: LlamaModel, _ ws: ForwardWorkspace, _ adapter: LoRAAdapter, row: (Int, Int) -> Int) -> ([Double], [Float]) {
        var labels = [Int32](repeating: -100, count: ws.rows)
        for (i, seq) in sequences.enumerated() { for t in 0..<(seq.count - 1) { labels[row(i, t)] = seq[t + 1] } }
        adapter.arena.zeroGradients()
        model.forward(ws, adapter: adapter)
        let V = model.config.vocabSize
        var losses: [Double] = []
        for (i, seq) in sequences.enumerated() {
            var sum = 0.0
            for t in 0..<(seq.count - 1) {
                let logits = ws.logits.pointer + row(i, t) * V
                sum += Softmax.logSumExp(logits, count: V) - Double(logits[Int(seq[t + 1])])
            }
            losses.append(sum)
        }
        _ = model.crossEntropy(logits: ws.logits.pointer, labels: labels, rows: ws.rows, gradScale: 0.1)
        model.backward(ws, adapter: adapter)
        return (losses, Array(UnsafeBufferPointer(start: adapter.arena.gradients, count: adapter.arena.count)))
    }

    /// Invariant: packed rows give every sequence the loss it has alone in its own padded row (fp32, 1e-5),
    /// and the same LoRA gradients — several sequences per row, a partial last row, positions restarting.
    func testPackedRowsGiveEachSequenceItsUnpackedLossAndGradient() throws {
        let model = try model()
        let unpackedWS = ForwardWorkspace(model: model, batch: sequences.count, length: 7, mode: .training(recompute: false))
        unpackedWS.load(sequences)
        let reference = lossesAndGradient(model, unpackedWS, adapter(model, rows: unpackedWS.rows)) { i, t in i * 7 + t }

        let packedWS = ForwardWorkspace(model: model, batch: sequences.count, length: 9, mode: .training(recompute: true))
        let placement = packedWS.loadPacked(sequences, length: 9)
        XCTAssertEqual(packedWS.batch, 3, "rows of 9: [7] [3 2] [5 1]")
        XCTAssertEqual(placement.map(\.row), [0, 1, 1, 2, 2])
        XCTAssertEqual(placement.map(\.column), [0, 0, 3, 0, 5])
        XCTAssertEqual((0..<9).map { packedWS.positions[9 + $0] }, [0, 1, 2, 0, 1, 5, 6, 7, 8], "positions restart per sequence")
        XCTAssertEqual((0..<9).map { packedWS.mask[9 + $0] }, [1, 1, 1, 1, 1, 0, 0, 0, 0])
        let packed = lossesAndGradient(model, packedWS, adapter(model, rows: packedWS.maxBatch * packedWS.maxLength)) { i, t in
            placement[i].row * 9 + placement[i].column + t
        }
        for (a, b) in zip(packed.0, reference.0) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b))) }
        for (a, b) in zip(packed.1, reference.1) { XCTAssertEqual(a, b, accuracy: 1e-5 * max(1, abs(b))) }
    }

    /// Invariant: a query in a packed row attends only inside its sequence (the probabilities of keys from
    /// the previous sequence in the row are exactly 0).
    func testPackedAttentionStaysInsideEachSequence() {
        let s = AttentionShape(batch: 1, queryLength: 8, keyLength: 8, heads: 1, kvHeads: 1, headDim: 4)
        var rng = SeededRandom(seed: 4)
        let q = (0..<32).map { _ in rng.normal() }, k = (0..<32).map { _ in rng.normal() }, v = (0..<32).map { _ in rng.normal() }
        let starts: [Int32] = [0, 0, 0, 3, 3, 3, 3, 7], mask = [Float](repeating: 1, count: 8)
        var p = [Float](repeating: .nan, count: 64), out = [Float](repeating: 0, count: 32)
        Attention.forward(s, q: q, k: k, v: v, keyMask: mask, segmentStarts: starts, compute: .fp32, probabilities: &p, out: &out)
        for t in 0..<8 {
            for j in 0..<8 {
                let inside = j >= Int(starts[t]) && j <= t
                if !inside { XCTAssertEqual(p[t * 8 + j], 0, "query \(t) key \(j)") } else { XCTAssertGreaterThan(p[t * 8 + j], 0) }
            }
            XCTAssertEqual((0..<8).reduce(Float(0)) { $0 + p[t * 8 + $1] }, 1, accuracy: 1e-6)
        }
    }
}
