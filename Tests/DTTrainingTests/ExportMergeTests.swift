// GGUF LoRA adapters (llama.cpp's layout) and merged models, checked against independent references:
// PEFT's logits (interop fixtures), the base + adapter forward pass, and a naive re-implementation of
// llama.cpp's Q/K permutation (convert_hf_to_gguf.py `permute`: reshape(H, 2, D/2, …).swapaxes(1, 2)).
import DTFormats
import DTKernels
import DTModel
import DTTraining
import Foundation
import TestSupport
import XCTest

final class ExportMergeTests: XCTestCase {
    func interop(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/interop/\(name)", ofType: nil), "fixture \(name) missing")
    }
    var tinyGGUF: String { TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/tiny/llama.gguf.bin" }
    var tinyQ8GGUF: String { TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/tiny/llama_q8.gguf.bin" }

    /// llama.cpp's permute, written from its numpy form: out[h][i][j] = in[h][j][i] over (H, D/2, 2) vs (H, 2, D/2).
    func naivePermute(_ w: [Float], rows: Int, cols: Int, heads: Int) -> [Float] {
        let d = rows / heads
        var out = w
        for h in 0..<heads {
            for i in 0..<(d / 2) {
                for j in 0..<2 {
                    let dst = h * d + i * 2 + j, src = h * d + j * (d / 2) + i
                    for c in 0..<cols { out[dst * cols + c] = w[src * cols + c] }
                }
            }
        }
        return out
    }

    /// Logits (T, V) of `ids` under `model` with an optional adapter.
    func logits(_ model: LlamaModel, _ ids: [Int32], adapter: ModelAdapter? = nil) -> [Float] {
        let ws = ForwardWorkspace(model: model, batch: 1, length: ids.count)
        ws.load([ids])
        model.forward(ws, adapter: adapter)
        return Array(UnsafeBufferPointer(start: ws.logits.pointer, count: ids.count * model.config.vocabSize))
    }

    func maxDiff(_ a: [Float], _ b: [Float]) -> Float { zip(a, b).map { abs($0 - $1) }.max()! }

    /// A random adapter (A and B non-zero) on `targets` of `config`.
    func randomAdapter(_ config: LlamaConfig, rank: Int = 4, alpha: Float = 8, rsLoRA: Bool = false,
                       targets: [TensorNames.Projection] = TensorNames.Projection.allCases, seed: UInt64 = 7) throws -> String {
        let dir = temporaryDirectory() + "/adapter"
        var o = LoRAOptions(); o.rank = rank; o.alpha = alpha; o.rsLoRA = rsLoRA; o.targets = targets
        var rng = SeededRandom(seed: seed)
        var entries: [SafetensorsWriter.Entry] = []
        for l in 0..<config.layers {
            for p in targets {
                let (out, inF) = config.projectionShape(p)
                entries.append(.init(name: LoRAAdapter.tensorName(l, p, "A"), shape: [rank, inF], values: (0..<(rank * inF)).map { _ in 0.3 * rng.normal() }))
                entries.append(.init(name: LoRAAdapter.tensorName(l, p, "B"), shape: [out, rank], values: (0..<(out * rank)).map { _ in 0.3 * rng.normal() }))
            }
        }
        try AtomicDirectory.write(dir, files: [("adapter_config.json", try PEFTFormat.loraConfigJSON(o, baseModel: "test")),
                                               ("adapter_model.safetensors", SafetensorsWriter.encode(entries, metadata: ["format": "pt"]))])
        return dir
    }

    /// Invariant: PEFT → GGUF adapter → back is exact (f32) and keeps the scale, for plain LoRA and rsLoRA
    /// (written with alpha·√r so llama.cpp's alpha / r gives α / √r).
    func testGGUFAdapterRoundTripKeepsTensorsAndScale() throws {
        let config = try ModelSource(path: try interop("tiny_model")).config
        for name in ["peft_lora", "peft_lora_rslora"] {
            let peft = try LoRAWeights.readPEFT(try interop(name), config: config)
            let file = temporaryDirectory() + "/a.gguf"
            try peft.writeGGUF(file, config: config, outType: .f32, description: [], overwrite: false)
            let back = try LoRAWeights.read(file, config: config)
            XCTAssertEqual(Set(back.options.targets), Set(peft.options.targets), name)
            XCTAssertEqual(back.options.rank, peft.options.rank, name)
            XCTAssertEqual(back.options.scale, peft.options.scale, accuracy: 1e-6 * peft.options.scale, name)
            XCTAssertEqual(Set(back.pairs.keys), Set(peft.pairs.keys), name)
            for (k, pair) in peft.pairs {
                XCTAssertEqual(back.pairs[k]!.a, pair.a, "\(name) A \(k)")
                XCTAssertEqual(back.pairs[k]!.b, pair.b, "\(name) B \(k)")
            }
            let g = try GGUFFile(path: file)
            let expectedAlpha = peft.options.rsLoRA ? peft.options.alpha * Float(peft.options.rank).squareRoot() : peft.options.alpha
            XCTAssertEqual(Float(g.metadata["adapter.lora.alpha"]!.double!), expectedAlpha, accuracy: 1e-5, name)
        }
    }

    /// Invariant: the GGUF adapter is laid out as llama.cpp reads it — keys, `<tensor>.lora_a` ggml [in, r]
    /// holding PEFT's lora_A bytes, `.lora_b` ggml [r, out] with q/k rows in llama.cpp's permuted order.
    func testGGUFAdapterLayoutIsLlamaCpps() throws {
        let source = try ModelSource(path: try interop("tiny_model"))
        let config = source.config
        let peft = try LoRAWeights.readPEFT(try interop("peft_lora"), config: config)
        let file = temporaryDirectory() + "/a.gguf"
        try peft.writeGGUF(file, config: config, outType: .f32, description: [.value("general.name", .string("t"))], overwrite: false)
        let g = try GGUFFile(path: file)
        XCTAssertEqual(g.metadata["general.type"]?.string, "adapter")
        XCTAssertEqual(g.metadata["adapter.type"]?.string, "lora")
        XCTAssertEqual(g.metadata["general.architecture"]?.string, "llama")
        XCTAssertEqual(g.tensors.count, 2 * 7 * config.layers)
        func floats(_ name: String) throws -> [Float] {
            let info = try XCTUnwrap(g.tensor(name), name)
            XCTAssertEqual(info.type, .f32)
            return Array(g.data(of: info).bindMemory(to: Float.self))
        }
        let r = peft.options.rank
        for p in TensorNames.Projection.allCases {
            let (out, inF) = config.projectionShape(p)
            let base = TensorNames.gguf(TensorNames.projection(1, p))!
            XCTAssertEqual(g.tensor(base + ".lora_a")?.dims, [inF, r], p.rawValue)
            XCTAssertEqual(g.tensor(base + ".lora_b")?.dims, [r, out], p.rawValue)
            let pair = peft.pair(1, p)!
            XCTAssertEqual(try floats(base + ".lora_a"), pair.a, "lora_a of \(p) is PEFT's lora_A unchanged")
            let heads = p == .q ? config.heads : p == .k ? config.kvHeads : nil
            let expectedB = heads.map { naivePermute(pair.b, rows: out, cols: r, heads: $0) } ?? pair.b
            XCTAssertEqual(try floats(base + ".lora_b"), expectedB, "lora_b of \(p)")
            if heads != nil { XCTAssertNotEqual(expectedB, pair.b, "the permutation must move rows") }
        }
    }

    /// Invariant: a GGUF adapter's effect equals the PEFT adapter's: through GGUF (f32, and f16 within
    /// f16's rounding) the tiny model gives PEFT's logits.
    func testGGUFAdapterGivesPEFTLogits() throws {
        let model = try LlamaModel(source: ModelSource(path: try interop("tiny_model")))
        let ref = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try interop("peft_lora_expected.json")))) as? [String: Any])
        let ids = (ref["ids"] as! [[NSNumber]])[0].map { Int32($0.intValue) }
        let want = (ref["logits"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) }
        let peft = try LoRAWeights.readPEFT(try interop("peft_lora"), config: model.config)
        for (type, tolerance) in [(GGMLType.f32, Float(1e-4)), (.f16, 2e-2), (.q8_0, 0.1)] {
            let file = temporaryDirectory() + "/a.gguf"
            try peft.writeGGUF(file, config: model.config, outType: type, description: [], overwrite: false)
            let adapter = try AdapterLoader.load(file, model: model)
            XCTAssertLessThanOrEqual(maxDiff(logits(model, ids, adapter: adapter), want), tolerance, type.name)
        }
    }

    /// Invariant: dtrain writes the tensors llama.cpp's own converter (convert_lora_to_gguf.py) writes for the
    /// same PEFT adapter — names, ggml dims, types and bytes — and the same alpha for plain LoRA. For rsLoRA the
    /// converter keeps α (so llama.cpp would apply α / r); dtrain writes α·√r, which llama.cpp turns into α / √r.
    func testExportWritesWhatLlamaCppsConverterWrites() throws {
        let config = try ModelSource(path: try interop("tiny_model")).config
        for name in ["peft_lora", "peft_lora_rslora"] {
            let reference = try GGUFFile(path: try interop("llamacpp_\(name).gguf.bin"))
            let peft = try LoRAWeights.readPEFT(try interop(name), config: config)
            let file = temporaryDirectory() + "/a.gguf"
            try peft.writeGGUF(file, config: config, outType: .f32, description: [], overwrite: false)
            let ours = try GGUFFile(path: file)
            XCTAssertEqual(Set(ours.tensors.map(\.name)), Set(reference.tensors.map(\.name)), name)
            for ref in reference.tensors {
                let t = try XCTUnwrap(ours.tensor(ref.name), ref.name)
                XCTAssertEqual(t.dims, ref.dims, ref.name)
                XCTAssertEqual(t.type, ref.type, ref.name)
                XCTAssertEqual(Array(ours.data(of: t)), Array(reference.data(of: ref)), "\(name) \(ref.name) bytes")
            }
            for key in ["general.type", "adapter.type", "general.architecture"] { XCTAssertEqual(ours.metadata[key], reference.metadata[key], key) }
            let theirs = Float(reference.metadata["adapter.lora.alpha"]!.double!), mine = Float(ours.metadata["adapter.lora.alpha"]!.double!)
            XCTAssertEqual(theirs, peft.options.alpha, name)
            XCTAssertEqual(mine, peft.options.rsLoRA ? peft.options.alpha * Float(peft.options.rank).squareRoot() : theirs, accuracy: 1e-5, name)
        }
    }

    /// Invariant: an adapter made by llama.cpp's converter loads in dtrain with llama.cpp's meaning: PEFT's
    /// logits for plain LoRA (rsLoRA is outside what that converter keeps).
    func testLlamaCppConvertedAdapterGivesPEFTLogits() throws {
        let model = try LlamaModel(source: ModelSource(path: try interop("tiny_model")))
        let ref = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try interop("peft_lora_expected.json")))) as? [String: Any])
        let ids = (ref["ids"] as! [[NSNumber]])[0].map { Int32($0.intValue) }
        let want = (ref["logits"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) }
        let adapter = try AdapterLoader.load(try interop("llamacpp_peft_lora.gguf.bin"), model: model)
        XCTAssertLessThanOrEqual(maxDiff(logits(model, ids, adapter: adapter), want), 1e-4)
        let rs = try LoRAWeights.read(try interop("llamacpp_peft_lora_rslora.gguf.bin"), config: model.config)
        XCTAssertEqual(rs.options.scale, 16 / 8, "llama.cpp's converter keeps alpha = 16 for r = 8: scale α / r")
    }

    /// Invariant: merge into an HF directory (sharded, with an index) gives the logits PEFT gives with the
    /// adapter on the base, and copies config and tokenizer files.
    func testMergeToHFGivesPEFTLogits() throws {
        let base = try ModelSource(path: try interop("tiny_model"))
        let weights = try LoRAWeights.readPEFT(try interop("peft_lora"), config: base.config)
        let out = temporaryDirectory() + "/merged"
        let report = try ModelMerge.toHF(base: base, weights: weights, outType: .same, dir: out, overwrite: false, maxShardBytes: 20_000)
        XCTAssertEqual(report.merged, 7 * base.config.layers)
        let index = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: out + "/model.safetensors.index.json"))) as? [String: Any])
        let map = try XCTUnwrap(index["weight_map"] as? [String: String])
        XCTAssertEqual(Set(map.keys), Set(base.safetensorsInventory.map(\.name)))
        XCTAssertGreaterThan(Set(map.values).count, 1, "several shards")
        for f in ["config.json", "tokenizer.json", "tokenizer_config.json"] { XCTAssertTrue(FileManager.default.fileExists(atPath: out + "/" + f), f) }
        let ref = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: try interop("peft_lora_expected.json")))) as? [String: Any])
        let ids = (ref["ids"] as! [[NSNumber]])[0].map { Int32($0.intValue) }
        let want = (ref["logits"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) }
        let merged = try LlamaModel(source: ModelSource(path: out))
        XCTAssertLessThanOrEqual(maxDiff(logits(merged, ids), want), 1e-4)
        XCTAssertThrowsError(try ModelMerge.toHF(base: base, weights: weights, outType: .same, dir: out, overwrite: false, maxShardBytes: 1 << 30),
                             "an existing output is not replaced without overwrite")
    }

    /// ΔW = s · B · A by a plain triple loop (HF row order).
    func naiveDelta(_ w: LoRAWeights, _ l: Int, _ p: TensorNames.Projection, _ c: LlamaConfig) -> [Float] {
        let (out, inF) = c.projectionShape(p), r = w.options.rank, pair = w.pair(l, p)!
        var d = [Float](repeating: 0, count: out * inF)
        for i in 0..<out { for j in 0..<inF { var acc: Float = 0; for k in 0..<r { acc += pair.b[i * r + k] * pair.a[k * inF + j] }; d[i * inF + j] = w.options.scale * acc } }
        return d
    }

    /// Invariant: merging into a GGUF with permuted Q/K rows (f32) gives the base + adapter logits and keeps
    /// every base key.
    func testMergeToGGUFGivesBasePlusAdapterLogits() throws {
        let ids: [Int32] = [3, 17, 42, 5, 250, 11, 99, 7]
        let base = try ModelSource(path: tinyGGUF)
        let weights = try LoRAWeights.readPEFT(try randomAdapter(base.config, targets: [.q, .k, .v, .down]), config: base.config)
        let out = temporaryDirectory() + "/merged.gguf"
        let report = try ModelMerge.toGGUF(base: base, weights: weights, outType: .f32, path: out, overwrite: false, extraMetadata: [])
        XCTAssertEqual(report.merged, 4 * base.config.layers)
        XCTAssertEqual(report.keptFraction, 1, accuracy: 1e-6)
        let model = try LlamaModel(source: base)
        let expected = logits(model, ids, adapter: weights.adapter(model: model))
        XCTAssertGreaterThan(maxDiff(expected, logits(model, ids)), 0.1, "the adapter must matter")
        XCTAssertLessThanOrEqual(maxDiff(logits(try LlamaModel(source: ModelSource(path: out)), ids), expected), 1e-4)
        let g = try GGUFFile(path: out), b = base.gguf!
        for key in b.metadataKeys where key != "general.file_type" { XCTAssertEqual(g.metadata[key], b.metadata[key], key) }
        XCTAssertEqual(g.metadata["general.file_type"]?.int, 0)
    }

    /// Invariant: `same` over a Q8_0 base re-encodes each merged tensor as Q8_0 blocks holding W + ΔW (ΔW by a
    /// naive product, rows permuted by the naive permute) within half a block step, and copies every other
    /// tensor byte for byte.
    func testMergeSameRequantizesMergedTensorsAndCopiesTheRest() throws {
        let base = try ModelSource(path: tinyQ8GGUF)
        let c = base.config
        let weights = try LoRAWeights.readPEFT(try randomAdapter(c, targets: [.q, .k, .down]), config: c)
        let out = temporaryDirectory() + "/merged.gguf"
        _ = try ModelMerge.toGGUF(base: base, weights: weights, outType: .same, path: out, overwrite: false, extraMetadata: [])
        let g = try GGUFFile(path: out), b = base.gguf!
        for info in b.tensors {
            let m = try XCTUnwrap(g.tensor(info.name))
            XCTAssertEqual(m.type, info.type, info.name)
            guard let l = (0..<c.layers).first(where: { info.name.hasPrefix("blk.\($0).") }),
                  let p = [TensorNames.Projection.q, .k, .down].first(where: { info.name == "blk.\(l).\($0.ggufName).weight" }) else {
                XCTAssertEqual(Array(g.data(of: m)), Array(b.data(of: info)), "\(info.name) is copied unchanged")
                continue
            }
            let (rows, cols) = c.projectionShape(p)
            var delta = naiveDelta(weights, l, p, c)
            if p == .q { delta = naivePermute(delta, rows: rows, cols: cols, heads: c.heads) }
            if p == .k { delta = naivePermute(delta, rows: rows, cols: cols, heads: c.kvHeads) }
            var w = [Float](repeating: 0, count: rows * cols), merged = w
            Dequantize.run(.q8_0, b.data(of: info).baseAddress!, &w, count: w.count)
            Dequantize.run(.q8_0, g.data(of: m).baseAddress!, &merged, count: merged.count)
            for block in 0..<(w.count / 32) {
                let target = (0..<32).map { w[block * 32 + $0] + delta[block * 32 + $0] }
                let step = target.map(abs).max()! / 127
                for j in 0..<32 {
                    XCTAssertLessThanOrEqual(abs(merged[block * 32 + j] - target[j]), step * (0.5 + 127.0 / 2048) + 1e-6, "\(info.name) block \(block): within half a step (+ the f16 scale error)")
                }
            }
        }
    }

    /// Invariant: GGUF base → HF directory undoes llama.cpp's Q/K permutation: the HF model with the adapter
    /// folded in gives the GGUF base + adapter logits.
    func testMergeGGUFBaseToHFGivesBasePlusAdapterLogits() throws {
        let ids: [Int32] = [1, 2, 3, 200, 150, 9]
        let base = try ModelSource(path: tinyGGUF)
        let weights = try LoRAWeights.readPEFT(try randomAdapter(base.config), config: base.config)
        let out = temporaryDirectory() + "/hf"
        _ = try ModelMerge.toHF(base: base, weights: weights, outType: .f32, dir: out, overwrite: false, maxShardBytes: 1 << 30)
        let model = try LlamaModel(source: base)
        let expected = logits(model, ids, adapter: weights.adapter(model: model))
        let merged = try LlamaModel(source: ModelSource(path: out))
        XCTAssertEqual(merged.config.hiddenSize, base.config.hiddenSize)
        XCTAssertLessThanOrEqual(maxDiff(logits(merged, ids), expected), 1e-4)
    }

    /// Invariant: Phi-3 — merging PEFT's adapter on the fused modules folds each part's ΔW into its rows of
    /// `qkv_proj` / `gate_up_proj` (GGUF `attn_qkv` / `ffn_up`): an HF base merged to HF, a GGUF base to GGUF and a
    /// GGUF base to HF (config.json written for Phi3ForCausalLM) all give the base + adapter logits; and the same
    /// adapter written as a llama.cpp GGUF adapter names the fused tensors.
    func testPhi3MergeFoldsIntoTheFusedTensors() throws {
        let dir = TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/families/phi3"
        let ids: [Int32] = [3, 17, 42, 5, 50, 11, 9, 7]
        for (basePath, gguf) in [(dir + "/model", false), (dir + "/model.gguf.bin", true)] {
            let base = try ModelSource(path: basePath)
            let weights = try LoRAWeights.readPEFT(dir + "/peft_lora", config: base.config)
            let model = try LlamaModel(source: base)
            let expected = logits(model, ids, adapter: weights.adapter(model: model))
            XCTAssertGreaterThan(maxDiff(expected, logits(model, ids)), 0.1, "the adapter must matter")
            let hf = temporaryDirectory() + "/hf"
            let report = try ModelMerge.toHF(base: base, weights: weights, outType: .f32, dir: hf, overwrite: false, maxShardBytes: 1 << 30)
            XCTAssertEqual(report.merged, 4 * base.config.layers, "qkv_proj, o_proj, gate_up_proj, down_proj per layer")
            let mergedHF = try ModelSource(path: hf)
            XCTAssertEqual(mergedHF.config.architecture, base.config.architecture)
            XCTAssertLessThanOrEqual(maxDiff(logits(try LlamaModel(source: mergedHF), ids), expected), 1e-4, "HF from \(basePath)")
            guard gguf else { continue }
            let out = temporaryDirectory() + "/merged.gguf"
            XCTAssertEqual(try ModelMerge.toGGUF(base: base, weights: weights, outType: .f32, path: out, overwrite: false, extraMetadata: []).merged,
                           4 * base.config.layers)
            XCTAssertLessThanOrEqual(maxDiff(logits(try LlamaModel(source: ModelSource(path: out)), ids), expected), 1e-4, "GGUF")
            let adapter = temporaryDirectory() + "/adapter.gguf"
            try weights.writeGGUF(adapter, config: base.config, outType: .f32, description: [], overwrite: false)
            XCTAssertEqual(try GGUFFile(path: adapter).tensors.map(\.name).filter { $0.hasPrefix("blk.0.") }.sorted(),
                           ["attn_output", "attn_qkv", "ffn_down", "ffn_up"].flatMap { ["blk.0.\($0).weight.lora_a", "blk.0.\($0).weight.lora_b"] })
        }
        // A LongRoPE GGUF base to HF: the factors and the attention factor go to config.json's rope_scaling, and the
        // directory gives the GGUF's logits on a text past the original context (long factors) and within it.
        let longRope = TestPaths.repoRoot + "/Tests/DTModelTests/Fixtures/families/phi3_longrope/model.gguf.bin"
        let base = try ModelSource(path: longRope)
        let hf = temporaryDirectory() + "/hf-longrope"
        _ = try ModelMerge.toHF(base: base, weights: try LoRAWeights.readPEFT(dir + "/peft_lora", config: base.config), outType: .f32, dir: hf,
                                overwrite: false, maxShardBytes: 1 << 30)
        let merged = try ModelSource(path: hf)
        XCTAssertEqual(merged.config.longRope, base.config.longRope)
        let model = try LlamaModel(source: base), weights = try LoRAWeights.readPEFT(dir + "/peft_lora", config: base.config)
        for text in [Array((0..<24).map { Int32($0 * 7 % 96) }), ids] {
            XCTAssertLessThanOrEqual(maxDiff(logits(try LlamaModel(source: merged), text), logits(model, text, adapter: weights.adapter(model: model))), 1e-4)
        }
    }

    /// Invariant: adapters that do not fit the base, or files that are not adapters, are refused naming the
    /// file and what was expected.
    func testMismatchedAdaptersAreRefused() throws {
        let tiny = try ModelSource(path: try interop("tiny_model")).config
        var other = tiny; other.hiddenSize *= 2
        XCTAssertThrowsError(try LoRAWeights.readPEFT(try interop("peft_lora"), config: other)) { e in
            XCTAssertTrue("\(e)".contains("adapter_model.safetensors") && "\(e)".contains("expected shape"), "\(e)")
        }
        XCTAssertThrowsError(try LoRAWeights.read(tinyGGUF, config: tiny)) { e in
            XCTAssertTrue("\(e)".contains("llama.gguf.bin") && "\(e)".contains("general.type") && "\(e)".contains("--model"), "\(e)")
        }
        var qwen = tiny; qwen.architecture = .qwen2
        let file = temporaryDirectory() + "/a.gguf"
        try LoRAWeights.readPEFT(try interop("peft_lora"), config: tiny).writeGGUF(file, config: tiny, outType: .f32, description: [], overwrite: false)
        XCTAssertThrowsError(try LoRAWeights.read(file, config: qwen)) { e in
            XCTAssertTrue("\(e)".contains("general.architecture") && "\(e)".contains("'llama'"), "\(e)")
        }
        XCTAssertThrowsError(try LoRAWeights.readPEFT(try interop("peft_lora"), config: tiny).writeGGUF(file, config: tiny, outType: .f32, description: [], overwrite: false),
                             "an existing GGUF is not replaced without overwrite")
    }
}
