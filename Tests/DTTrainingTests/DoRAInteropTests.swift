// DoRA against PEFT and through dtrain's files (fixtures and their generator: scripts/make_dora_fixtures.py):
// PEFT-made DoRA adapters give PEFT's logits in dtrain, dtrain's DoRA adapter gives PEFT the loss dtrain
// computes, merging folds m / ‖W + s·B·A‖, GGUF adapters are refused, and bad DoRA files are named.
import DTFormats
import DTKernels
import DTModel
import DTTraining
import Foundation
import TestSupport
import XCTest

final class DoRAInteropTests: XCTestCase {
    func path(_ name: String) throws -> String { try InteropFixtures.path(name, madeBy: "make_dora_fixtures.py") }
    func json(_ name: String) throws -> [String: Any] { try InteropFixtures.json(try path(name)) }
    func model() throws -> LlamaModel { try LlamaModel(source: ModelSource(path: try path("tiny_model"))) }
    func logits(_ model: LlamaModel, _ ids: [Int32], adapter: ModelAdapter?) -> [Float] { InteropFixtures.logits(model, ids, adapter: adapter) }
    func maxDiff(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max()! }
    func expected(_ name: String) throws -> (ids: [Int32], logits: [Float], base: [Float]) {
        let ref = try json(name)
        return ((ref["ids"] as! [[NSNumber]])[0].map { Int32($0.intValue) }, (ref["logits"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) },
                (ref["base_logits"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) })
    }

    /// Invariant: PEFT DoRA adapters (all seven targets; rsLoRA on q/o/down, two of which add into the residual
    /// stream) give PEFT's logits in dtrain (fp32, max |Δ| ≤ 1e-4), and the magnitudes matter: the same A and B
    /// as plain LoRA give other logits.
    func testPEFTDoRAAdapterGivesPEFTLogits() throws {
        let m = try model()
        for name in ["peft_dora", "peft_dora_rslora"] {
            let want = try expected("\(name)_expected.json")
            let weights = try LoRAWeights.readPEFT(try path(name), config: m.config)
            XCTAssertTrue(weights.options.useDoRA, name)
            XCTAssertEqual(weights.magnitudes.count, weights.pairs.count, name)
            let adapter = try AdapterLoader.load(try path(name), model: m)
            XCTAssertLessThanOrEqual(maxDiff(logits(m, want.ids, adapter: adapter), want.logits), 1e-4, "\(name): max |logit − PEFT logit|")
            XCTAssertLessThanOrEqual(maxDiff(logits(m, want.ids, adapter: nil), want.base), 1e-4, "\(name): base model")
            var plain = weights
            plain.options.useDoRA = false
            plain.magnitudes = [:]
            XCTAssertGreaterThan(maxDiff(logits(m, want.ids, adapter: plain.adapter(model: m)), want.logits), 1e-2,
                                 "\(name): DoRA must differ from LoRA with the same A and B")
        }
    }

    /// Invariant: dtrain's DoRA adapter (trained 6 steps by `dtrain train --use-dora true`), loaded by PEFT onto
    /// the HF model, gives the mean NLL dtrain computes (within 1e-4); PEFT loaded every tensor and PEFT's own
    /// merge gives the same NLL.
    func testDtrainDoRAAdapterMeansTheSameInPEFT() throws {
        let m = try model()
        let ref = try json("dtrain_dora_expected.json")
        let report = try XCTUnwrap(ref["load_report"] as? [String: Any])
        XCTAssertEqual(report["weights_clean"] as? Bool, true, "PEFT: \(report["messages"] ?? "")")
        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try path("dtrain_dora/adapter_config.json")))) as? [String: Any])
        XCTAssertEqual(config["use_dora"] as? Bool, true)
        let sequences = (ref["sequences"] as! [[NSNumber]]).map { $0.map { Int32($0.intValue) } }
        func meanNLL(_ adapter: ModelAdapter?) -> Double { InteropFixtures.meanNLL(m, sequences, adapter: adapter) }
        let base = meanNLL(nil)
        XCTAssertEqual(base, (ref["base_mean_nll"] as! NSNumber).doubleValue, accuracy: 1e-4)
        let dora = meanNLL(try AdapterLoader.load(try path("dtrain_dora"), model: m))
        XCTAssertEqual(dora, (ref["dora_mean_nll"] as! NSNumber).doubleValue, accuracy: 1e-4)
        XCTAssertEqual(dora, (ref["peft_merged_mean_nll"] as! NSNumber).doubleValue, accuracy: 1e-4)
        XCTAssertGreaterThan(abs(dora - base), 1e-2, "training moved the loss")
        let magnitudes = try LoRAWeights.readPEFT(try path("dtrain_dora"), config: m.config).magnitudes
        let fresh = LoRAAdapter(model: m, options: { var o = LoRAOptions(); o.rank = 4; o.useDoRA = true; return o }(), seed: 0)
        let trained = magnitudes[LoRAAdapter.key(0, .q)]!, initial = fresh.arena.array(LoRAAdapter.magnitudeName(0, .q))
        XCTAssertGreaterThan(maxDiff(trained, initial), 1e-3, "the magnitudes were trained")
    }

    /// Invariant: DoRA started from a plain LoRA adapter (`init_adapter` with use_dora) begins at that adapter's
    /// model — its magnitudes start at ‖W + s·B·A‖ (PEFT's initialisation), so m / ‖W + s·B·A‖ = 1: PEFT's LoRA logits.
    func testDoRAFromALoRAAdapterStartsAtItsModel() throws {
        let m = try model()
        let want = try expected("peft_lora_expected.json")
        let dora = try LoRAWeights.readPEFT(try path("peft_lora"), config: m.config).adapter(model: m, useDoRA: true)
        XCTAssertTrue(dora.options.useDoRA)
        XCTAssertLessThanOrEqual(maxDiff(logits(m, want.ids, adapter: dora), want.logits), 1e-4)
        XCTAssertGreaterThan(maxDiff(want.logits, want.base), 1e-2, "the LoRA adapter matters")
    }

    /// Invariant: merging a DoRA adapter (fp32, W' = m / ‖W + s·B·A‖ ⊙ (W + s·B·A)) into an HF directory gives
    /// PEFT's logits with the adapter.
    func testMergeDoRAToHFGivesPEFTLogits() throws {
        let base = try ModelSource(path: try path("tiny_model"))
        let want = try expected("peft_dora_expected.json")
        let weights = try LoRAWeights.readPEFT(try path("peft_dora"), config: base.config)
        let out = temporaryDirectory() + "/merged"
        let report = try ModelMerge.toHF(base: base, weights: weights, outType: .f32, dir: out, overwrite: false, maxShardBytes: 1 << 30)
        XCTAssertEqual(report.merged, 7 * base.config.layers)
        XCTAssertLessThanOrEqual(maxDiff(logits(try LlamaModel(source: ModelSource(path: out)), want.ids, adapter: nil), want.logits), 1e-4)
    }

    /// Invariant: merging a DoRA adapter into a GGUF base with llama.cpp's permuted Q/K rows (f32) gives the
    /// logits of the base with the adapter.
    func testMergeDoRAToGGUFGivesBasePlusAdapterLogits() throws {
        let ids: [Int32] = [3, 17, 42, 5, 250, 11, 99, 7]
        let base = try ModelSource(path: TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/tiny/llama.gguf.bin")
        let weights = try LoRAWeights.readPEFT(try randomDoRAAdapter(base.config, targets: [.q, .k, .o, .down]), config: base.config)
        let out = temporaryDirectory() + "/merged.gguf"
        let report = try ModelMerge.toGGUF(base: base, weights: weights, outType: .f32, path: out, overwrite: false, extraMetadata: [])
        XCTAssertEqual(report.merged, 4 * base.config.layers)
        let model = try LlamaModel(source: base)
        let expected = logits(model, ids, adapter: weights.adapter(model: model))
        XCTAssertGreaterThan(maxDiff(expected, logits(model, ids, adapter: nil)), 0.1, "the adapter must matter")
        XCTAssertLessThanOrEqual(maxDiff(logits(try LlamaModel(source: ModelSource(path: out)), ids, adapter: nil), expected), 1e-4)
    }

    /// Invariant: a DoRA adapter cannot become a llama.cpp GGUF adapter (no magnitude vectors there): refused,
    /// pointing to `dtrain merge`, with nothing written.
    func testGGUFExportOfDoRAIsRefused() throws {
        let config = try ModelSource(path: try path("tiny_model")).config
        let weights = try LoRAWeights.readPEFT(try path("peft_dora"), config: config)
        let file = temporaryDirectory() + "/a.gguf"
        XCTAssertThrowsError(try weights.writeGGUF(file, config: config, outType: .f32, description: [], overwrite: false)) { e in
            XCTAssertTrue("\(e)".contains("DoRA") && "\(e)".contains("dtrain merge"), "\(e)")
        }
        XCTAssertFalse(FileManager.default.fileExists(atPath: file))
    }

    /// Invariant: DoRA files that do not fit are refused naming the file, the tensor and what was expected: a
    /// magnitude of the wrong length, a missing one, one without use_dora, a non-finite one.
    func testBadDoRAFilesAreRefused() throws {
        let config = try ModelSource(path: try path("tiny_model")).config
        let name = LoRAAdapter.magnitudeName(1, .o)
        func refused(_ dir: String, _ parts: [String], file: StaticString = #filePath, line: UInt = #line) {
            XCTAssertThrowsError(try LoRAWeights.readPEFT(dir, config: config), file: file, line: line) { e in
                for p in parts { XCTAssertTrue("\(e)".contains(p), "'\(p)' in: \(e)", file: file, line: line) }
            }
        }
        refused(try randomDoRAAdapter(config, targets: [.o], magnitudeLength: { $0 == name ? 32 : nil }),
                ["adapter_model.safetensors", name, "expected shape [\(config.hiddenSize)]", "found [32]"])
        refused(try randomDoRAAdapter(config, targets: [.o], magnitudeLength: { $0 == name ? 0 : nil }),
                ["adapter_model.safetensors", name, "missing tensor", "use_dora true"])
        refused(try randomDoRAAdapter(config, targets: [.o], useDoRA: false), ["adapter_model.safetensors", "use_dora false"])
        refused(try randomDoRAAdapter(config, targets: [.o], poison: name), ["adapter_model.safetensors", name])
    }

    /// A PEFT DoRA directory with random A, B and positive m on `targets` (`magnitudeLength` overrides a
    /// magnitude's length, 0 leaves it out; `poison` puts a NaN into that tensor).
    func randomDoRAAdapter(_ config: LlamaConfig, targets: [TensorNames.Projection], useDoRA: Bool = true,
                           magnitudeLength: (String) -> Int? = { _ in nil }, poison: String? = nil) throws -> String {
        let dir = temporaryDirectory() + "/adapter"
        var o = LoRAOptions(); o.rank = 4; o.alpha = 8; o.targets = targets; o.useDoRA = useDoRA
        var rng = SeededRandom(seed: 17)
        var entries: [SafetensorsWriter.Entry] = []
        for l in 0..<config.layers {
            for p in targets {
                let (out, inF) = config.projectionShape(p)
                entries.append(.init(name: LoRAAdapter.tensorName(l, p, "A"), shape: [4, inF], values: (0..<(4 * inF)).map { _ in 0.3 * rng.normal() }))
                entries.append(.init(name: LoRAAdapter.tensorName(l, p, "B"), shape: [out, 4], values: (0..<(out * 4)).map { _ in 0.3 * rng.normal() }))
                let name = LoRAAdapter.magnitudeName(l, p), count = magnitudeLength(name) ?? out
                var m = (0..<count).map { _ in 1 + 0.5 * abs(rng.normal()) }
                if name == poison { m[0] = .nan }
                if count > 0 { entries.append(.init(name: name, shape: [count], values: m)) }
            }
        }
        try AtomicDirectory.write(dir, files: [("adapter_config.json", try PEFTFormat.loraConfigJSON(o, baseModel: "test")),
                                               ("adapter_model.safetensors", SafetensorsWriter.encode(entries, metadata: ["format": "pt"]))])
        return dir
    }
}
