// Loading converts one frozen matrix at a time and releases its file pages before the next: a base converted
// into memory of its own (fp32 or bf16 copies, NF4) does not also keep the checkpoint's pages resident, which
// is what lets a model larger than half the node's memory load at all. A base used as stored keeps them.
import DTFormats
import DTKernels
import DTModel
import Foundation
import TestSupport
import XCTest

final class StreamingLoadTests: XCTestCase {
    func tinyCheckpoint() -> (dir: String, file: String, kib: Int) {
        var shape = TinyModel.Shape()
        shape.vocab = 256; shape.hidden = 256; shape.intermediate = 512; shape.layers = 3; shape.heads = 4; shape.kvHeads = 2
        let dir = TinyModel.write(shape, seed: 3)
        let file = dir + "/model.safetensors"
        let size = (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0
        return (dir, file, size / 1024)
    }

    /// Invariant: after an NF4 load and an fp32 one, at most 5% of the checkpoint's pages are still resident
    /// (the 1-D norms and the page fragments between tensors); a base used as stored keeps the pages it reads.
    func testConvertedBaseReleasesTheCheckpointPages() throws {
        let (dir, file, kib) = tinyCheckpoint()
        XCTAssertGreaterThan(kib, 1000)
        for (precision, compute) in [(WeightPrecision.nf4, ComputePrecision.fp32), (.fp32, .fp32)] {
            let source = try ModelSource(path: dir)
            let model = try LlamaModel(source: source, precision: precision, compute: compute)
            XCTAssertLessThanOrEqual(MappedResidency.kibibytes(of: file), kib / 20, "\(precision): checkpoint pages still resident")
            XCTAssertEqual(model.layers.count, 3)
        }
        // As stored: the products read the file, which therefore stays (its pages come back as they are used).
        let source = try ModelSource(path: dir)
        let asStored = try LlamaModel(source: source, precision: .asStored)
        let ws = ForwardWorkspace(model: asStored, batch: 1, length: 8)
        ws.load([[1, 2, 3, 4, 5, 6, 7, 8]])
        asStored.forward(ws)
        XCTAssertGreaterThan(MappedResidency.kibibytes(of: file), kib / 2)
    }

    /// Invariant: the progress callback sees every frozen matrix once, in order, with byte counts summing to
    /// the matrices' stored bytes (what the progress line shows).
    func testProgressCountsEveryMatrix() throws {
        let (dir, _, _) = tinyCheckpoint()
        var seen: [LlamaModel.LoadProgress] = []
        _ = try LlamaModel(source: ModelSource(path: dir), precision: .nf4, progress: { seen.append($0) })
        let expected = 3 * 7 + 2   // seven projections per layer, embedding and (untied) LM head
        XCTAssertEqual(seen.map(\.tensorsDone), Array(1...expected))
        XCTAssertEqual(seen.last?.tensors, expected)
        // fp32 checkpoint: 4 bytes per element of every matrix.
        let matrices = 3 * (256 * 256 * 2 + 2 * 128 * 256 + 3 * 256 * 512) + 2 * 256 * 256
        XCTAssertEqual(seen.last?.bytes, 4 * matrices)
        XCTAssertEqual(seen.last?.bytesDone, 4 * matrices)
    }
}
