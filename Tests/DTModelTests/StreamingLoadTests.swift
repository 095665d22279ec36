// Loading converts one frozen matrix at a time and releases its file pages before the next: a base converted
// into memory of its own (fp32 or bf16 copies, NF4) does not also keep the checkpoint's pages resident, which
// is what lets a model larger than half the node's memory load at all.
import DTFormats
import DTKernels
import DTModel
import Foundation
import TestSupport
import XCTest

final class StreamingLoadTests: XCTestCase {
    static let layers = 3
    func checkpoint() -> (dir: String, file: String, bytes: Int) {
        var shape = TinyModel.Shape()
        shape.vocab = 256; shape.hidden = 512; shape.intermediate = 1536; shape.layers = Self.layers; shape.heads = 8; shape.kvHeads = 4
        let dir = TinyModel.write(shape, seed: 3)
        let file = dir + "/model.safetensors"
        return (dir, file, (try? FileManager.default.attributesOfItem(atPath: file)[.size] as? Int) ?? 0)
    }

    /// Invariant: while an NF4 (or fp32) base loads, the checkpoint pages this process holds stay a small part
    /// of the file after each matrix (without streaming they grow to the whole file by the last matrix), and
    /// after the load at most 4 MiB remain (two large page-cache folios).
    func testLoadingReleasesEachMatrixsPages() throws {
        let (dir, file, bytes) = checkpoint()
        XCTAssertGreaterThan(bytes, 30 << 20)
        for precision in [WeightPrecision.nf4, .fp32] {
            var peak = 0
            let model = try LlamaModel(source: ModelSource(path: dir), precision: precision,
                                       progress: { _ in peak = max(peak, MappedResidency.kibibytes(of: file) * 1024) })
            XCTAssertEqual(model.layers.count, Self.layers)
            XCTAssertLessThanOrEqual(peak, bytes / 3, "\(precision): checkpoint pages held while loading")
            XCTAssertLessThanOrEqual(MappedResidency.kibibytes(of: file) * 1024, 4 << 20, "\(precision): checkpoint pages held after loading")
        }
    }

    /// Invariant: the progress callback sees every frozen matrix once, in order, with byte counts summing to
    /// the matrices' stored bytes (what the progress line shows).
    func testProgressCountsEveryMatrix() throws {
        let (dir, _, _) = checkpoint()
        var seen: [LlamaModel.LoadProgress] = []
        _ = try LlamaModel(source: ModelSource(path: dir), precision: .nf4, progress: { seen.append($0) })
        let expected = Self.layers * 7 + 2   // seven projections per layer, embedding and (untied) LM head
        XCTAssertEqual(seen.map(\.tensorsDone), Array(1...expected))
        XCTAssertEqual(seen.last?.tensors, expected)
        // fp32 checkpoint: 4 bytes per element of every matrix (q, o 512²; k, v 256 × 512; gate, up, down 1536 × 512).
        let matrices = Self.layers * (2 * 512 * 512 + 2 * 256 * 512 + 3 * 1536 * 512) + 2 * 256 * 512
        XCTAssertEqual(seen.last?.bytes, 4 * matrices)
        XCTAssertEqual(seen.last?.bytesDone, 4 * matrices)
    }
}
