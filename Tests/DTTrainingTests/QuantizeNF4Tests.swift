// `dtrain quantize` output: the NF4 + double quantization base dtrain makes at load, as a bitsandbytes
// directory (checked against transformers + bitsandbytes by scripts/make_quantize_fixtures.py).
import DTFormats
import DTModel
import DTTraining
import Foundation
import TestSupport
import XCTest

final class QuantizeNF4Tests: XCTestCase {
    func nf4(_ m: FrozenMatrix) throws -> NF4.Tensor {
        guard case .nf4(let t) = m.storage else { throw XCTSkip("not NF4") }
        return t
    }

    /// Invariant: every projection read back from the written directory is byte for byte the NF4 tensor
    /// `precision: nf4` makes at load from the same base (HF, and GGUF with llama.cpp's permuted Q/K rows),
    /// and the other tensors are unchanged, so both give the same logits.
    func testQuantizeWritesTheNF4BaseQuantizedAtLoad() throws {
        var shape = TinyModel.Shape(); shape.hidden = 64; shape.intermediate = 128; shape.heads = 4; shape.kvHeads = 2
        for path in [TinyModel.write(shape), TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/tiny/llama.gguf.bin"] {
            let source = try ModelSource(path: path)
            let out = temporaryDirectory() + "/nf4"
            let report = try NF4Export.toHF(base: source, dir: out, overwrite: false, maxShardBytes: 40_000)
            XCTAssertEqual(report.quantized, 7 * source.config.layers, path)
            let atLoad = try LlamaModel(source: source, precision: .nf4)
            let saved = try LlamaModel(source: ModelSource(path: out), precision: .nf4)
            for l in 0..<source.config.layers {
                for p in TensorNames.Projection.allCases {
                    let a = try nf4(atLoad.layers[l].projections[p]!), b = try nf4(saved.layers[l].projections[p]!)
                    XCTAssertEqual(a.codes, b.codes, "\(path) layer \(l) \(p) codes")
                    XCTAssertEqual(a.quantizedAbsmax, b.quantizedAbsmax, "\(p) absmax codes")
                    XCTAssertEqual(a.nestedAbsmax, b.nestedAbsmax, "\(p) nested absmax")
                    XCTAssertEqual(a.offset, b.offset, "\(p) offset")
                }
            }
            let ids: [Int32] = [1, 5, 9, 33, 2, 7]
            func logits(_ m: LlamaModel) -> [Float] {
                let ws = ForwardWorkspace(model: m, batch: 1, length: ids.count)
                ws.load([ids]); m.forward(ws)
                return Array(UnsafeBufferPointer(start: ws.logits.pointer, count: ids.count * m.config.vocabSize))
            }
            XCTAssertEqual(logits(atLoad), logits(saved), path)
            let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/config.json"))) as? [String: Any])
            let q = try XCTUnwrap(config["quantization_config"] as? [String: Any])
            XCTAssertEqual(q["bnb_4bit_quant_type"] as? String, "nf4")
            XCTAssertEqual(q["bnb_4bit_use_double_quant"] as? Bool, true)
            XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/model.safetensors.index.json"), "sharded")
        }
    }

    /// Invariant: transformers + bitsandbytes load dtrain's quantize output of the interop tiny model and give
    /// the logits dtrain gives on it (fixture from scripts/make_quantize_fixtures.py, within 1e-4).
    func testTransformersLoadsTheQuantizedDirectory() throws {
        let fixture = try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/interop/quantize_nf4_expected.json", ofType: nil),
                                    "run scripts/make_quantize_fixtures.py")
        let ref = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: fixture))) as? [String: Any])
        let base = try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/interop/tiny_model", ofType: nil))
        let out = temporaryDirectory() + "/nf4"
        _ = try NF4Export.toHF(base: ModelSource(path: base), dir: out, overwrite: false, maxShardBytes: 1 << 30)
        let ids = (ref["ids"] as! [NSNumber]).map { Int32($0.intValue) }
        let want = (ref["logits"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) }
        let m = try LlamaModel(source: ModelSource(path: out), precision: .nf4)
        let ws = ForwardWorkspace(model: m, batch: 1, length: ids.count)
        ws.load([ids]); m.forward(ws)
        let got = Array(UnsafeBufferPointer(start: ws.logits.pointer, count: ids.count * m.config.vocabSize))
        XCTAssertLessThanOrEqual(zip(got, want).map { abs($0 - $1) }.max()!, 1e-4)
    }
}
