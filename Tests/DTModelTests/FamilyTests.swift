// The architecture families against Hugging Face transformers: for each family a small random checkpoint
// (bf16 sharded safetensors) and a GGUF of the same weights, both made by scripts/make_family_fixtures.py,
// give transformers' fp32 logits on a text longer than the family's sliding window; generation with the KV
// cache equals recomputing the whole sequence past the window; unsupported families are refused by name.
import DTFormats
import DTKernels
import DTModel
import Foundation
import TestSupport
import XCTest

/// A family fixture: families/<name>/{model/, model.gguf.bin, expected.safetensors, ids.json}.
struct FamilyFixture {
    let directory: String
    var model: String { directory + "/model" }
    var gguf: String { directory + "/model.gguf.bin" }

    init(_ name: String) throws { directory = try fixturePath("families/\(name)") }

    /// max |dtrain − transformers| over the unpadded positions of both sequences, all of the vocabulary.
    func maxLogitDifference(_ path: String, expected tensor: String = "logits", compute: ComputePrecision = .fp32) throws -> Float {
        let json = try loadJSON(directory + "/ids.json")
        let ids = (json["ids"] as! [[NSNumber]]).map { $0.map { Int32($0.intValue) } }
        let mask = (json["attention_mask"] as! [[NSNumber]]).map { $0.map(\.intValue) }
        let expected = try SafetensorsFile(path: directory + "/expected.safetensors").floats(tensor)
        let model = try LlamaModel(source: ModelSource(path: path), compute: compute)
        let V = model.config.vocabSize, T = ids[0].count
        let ws = ForwardWorkspace(model: model, batch: ids.count, length: T)
        ws.load(zip(ids, mask).map { seq, m in Array(seq.prefix(m.reduce(0, +))) })
        model.forward(ws)
        var maxDiff: Float = 0
        for b in 0..<ids.count { for t in 0..<T where mask[b][t] == 1 { for j in 0..<V {
            maxDiff = max(maxDiff, abs(ws.logits[(b * T + t) * V + j] - expected[(b * T + t) * V + j]))
        } } }
        return maxDiff
    }
}

final class FamilyTests: XCTestCase {
    /// Invariant: a mistral checkpoint whose sliding_window (5) is shorter than the text (24 tokens) gives
    /// transformers' logits — every layer attends to the last 5 keys only — from safetensors and from GGUF
    /// (llama arch, permuted Q/K, `llama.attention.sliding_window`).
    func testMistralSlidingWindowMatchesTransformers() throws {
        let f = try FamilyFixture("mistral_sliding")
        let config = try ModelSource(path: f.model).config
        XCTAssertEqual(config.architecture.slidingWindow, 5)
        XCTAssertEqual((0..<config.layers).map { config.architecture.window(layer: $0) }, [5, 5])
        XCTAssertLessThanOrEqual(try f.maxLogitDifference(f.model), 1e-3, "safetensors")
        XCTAssertEqual(try ModelSource(path: f.gguf).config.architecture.slidingWindow, 5)
        XCTAssertLessThanOrEqual(try f.maxLogitDifference(f.gguf), 1e-3, "GGUF")
    }

    /// Invariant: qwen3 (per-head q/k RMSNorm before RoPE, head_dim 48 from config.json with 2 heads over
    /// hidden 64, no q/k/v bias, tied embeddings) gives transformers' logits from safetensors and from a GGUF
    /// with arch `qwen3` and `blk.N.attn_q_norm` / `attn_k_norm`; cached generation equals recomputation.
    func testQwen3MatchesTransformers() throws {
        let f = try FamilyFixture("qwen3")
        let config = try ModelSource(path: f.model).config
        XCTAssertEqual(config.architecture.name, "qwen3")
        XCTAssertTrue(config.architecture.qkNorm)
        XCTAssertFalse(config.architecture.qkvBias)
        XCTAssertEqual(config.headDim, 48)
        XCTAssertLessThanOrEqual(try f.maxLogitDifference(f.model), 1e-3, "safetensors")
        let gguf = try ModelSource(path: f.gguf).config
        XCTAssertEqual(gguf.architecture, config.architecture)
        XCTAssertLessThanOrEqual(try f.maxLogitDifference(f.gguf), 1e-3, "GGUF")
        try assertCachedGenerationMatchesRecompute(try LlamaModel(source: ModelSource(path: f.model)), prompt: [3, 14, 15, 9, 2, 6, 5], tokens: 20)
    }

    /// Invariant: Gemma 3 text — (1 + w) RMSNorm, sandwich norms, embeddings × √C, GeGLU (tanh GELU),
    /// query_pre_attn_scalar, QK-norm, windowed layers (window 5 on 24 tokens) with their own RoPE base beside a
    /// global layer, tied embeddings — gives transformers' logits from safetensors, and from a GGUF named as
    /// llama.cpp's converter names it (norms stored as 1 + w, score scale 1/√D as llama.cpp uses); cached
    /// logits equal recomputation past the window (greedy tokens would repeat one token on these weights).
    func testGemma3MatchesTransformers() throws {
        let f = try FamilyFixture("gemma3")
        let config = try ModelSource(path: f.model).config
        XCTAssertEqual(config.architecture.name, "gemma3_text")
        XCTAssertEqual((0..<3).map { config.architecture.window(layer: $0) }, [5, 5, nil])
        XCTAssertEqual(config.architecture.localRopeTheta, 10000)
        XCTAssertEqual(config.ropeTheta, 1_000_000)
        XCTAssertEqual(config.architecture.queryScale, 24)
        XCTAssertTrue(config.tiedEmbeddings)
        XCTAssertLessThanOrEqual(try f.maxLogitDifference(f.model), 1e-3, "safetensors")
        let gguf = try ModelSource(path: f.gguf).config
        XCTAssertEqual((0..<3).map { gguf.architecture.window(layer: $0) }, [5, 5, nil])
        XCTAssertLessThanOrEqual(try f.maxLogitDifference(f.gguf, expected: "logits_gguf"), 1e-3, "GGUF")
        try assertCachedLogitsMatchRecompute(try LlamaModel(source: ModelSource(path: f.model)))
    }

    /// Invariant: Gemma 2 — attention soft-capping (3.0) and final-logit soft-capping (2.5), both small enough
    /// to change these logits, with sandwich norms, (1 + w) RMSNorm, GeGLU, scaled embeddings and alternating
    /// windowed/global layers (window 5 on 24 tokens) — gives transformers' logits from safetensors and from a
    /// GGUF (arch `gemma2`, `gemma2.attn_logit_softcapping` / `final_logit_softcapping`, llama.cpp's fixed
    /// alternation); cached logits equal recomputation past the window.
    func testGemma2MatchesTransformers() throws {
        let f = try FamilyFixture("gemma2")
        let config = try ModelSource(path: f.model).config
        XCTAssertEqual(config.architecture.name, "gemma2")
        XCTAssertEqual(config.architecture.attentionSoftcap, 3.0)
        XCTAssertEqual(config.architecture.finalLogitSoftcap, 2.5)
        XCTAssertEqual((0..<3).map { config.architecture.window(layer: $0) }, [5, nil, 5])
        XCTAssertNil(config.architecture.localRopeTheta)
        XCTAssertEqual(config.ropeTheta, 10000)
        XCTAssertLessThanOrEqual(try f.maxLogitDifference(f.model), 1e-3, "safetensors")
        let gguf = try ModelSource(path: f.gguf).config
        XCTAssertEqual(gguf.architecture.attentionSoftcap, 3.0)
        XCTAssertEqual(gguf.architecture.finalLogitSoftcap, 2.5)
        XCTAssertEqual((0..<3).map { gguf.architecture.window(layer: $0) }, [5, nil, 5])
        XCTAssertLessThanOrEqual(try f.maxLogitDifference(f.gguf), 1e-3, "GGUF")
        try assertCachedLogitsMatchRecompute(try LlamaModel(source: ModelSource(path: f.model)))
    }

    /// Invariant: Phi-3 — q/k/v stored as one `qkv_proj` and gate/up as one `gate_up_proj`, taken apart by rows at
    /// load (GGUF: `attn_qkv`, and `ffn_up` of 2·I rows, no Q/K permutation), sliding window 5 on 24 tokens in every
    /// layer, untied head — gives transformers' logits from safetensors and from GGUF; cached logits equal
    /// recomputation past the window.
    func testPhi3MatchesTransformers() throws {
        let f = try FamilyFixture("phi3")
        let source = try ModelSource(path: f.model)
        XCTAssertEqual(source.config.architecture.name, "phi3")
        XCTAssertTrue(source.config.architecture.fusedProjections)
        XCTAssertEqual(try source.tensor("model.layers.0.self_attn.q_proj.weight")?.shape, [64, 64], "q's rows of qkv_proj")
        XCTAssertEqual(try source.tensor("model.layers.0.self_attn.k_proj.weight")?.shape, [32, 64], "k's rows of qkv_proj")
        XCTAssertEqual(try source.tensor("model.layers.0.mlp.up_proj.weight")?.shape, [96, 64], "up's rows of gate_up_proj")
        XCTAssertEqual((0..<2).map { source.config.architecture.window(layer: $0) }, [5, 5])
        XCTAssertFalse(source.config.tiedEmbeddings)
        XCTAssertLessThanOrEqual(try f.maxLogitDifference(f.model), 1e-3, "safetensors")
        let gguf = try ModelSource(path: f.gguf).config
        XCTAssertEqual(gguf.architecture, source.config.architecture)
        XCTAssertLessThanOrEqual(try f.maxLogitDifference(f.gguf), 1e-3, "GGUF")
        try assertCachedLogitsMatchRecompute(try LlamaModel(source: ModelSource(path: f.model)))
    }

    /// Invariant: QLoRA's bases work on Phi-3's fused tensors: the GGUF kept as stored (BF16 blocks, each projection a
    /// row range of attn_qkv / ffn_up, dequantized per use) gives the fp32 base's logits, and NF4 quantized at load
    /// from the HF shards stays within NF4's error of them, as for an unfused family (a wrong row range would be off
    /// by the logits' own size).
    func testPhi3QuantizedBasesMatchFP32() throws {
        let f = try FamilyFixture("phi3")
        let ids: [Int32] = [3, 17, 42, 5, 50, 11, 9, 7, 60, 2, 33, 21]
        func logits(_ path: String, _ precision: WeightPrecision) throws -> [Float] {
            let model = try LlamaModel(source: ModelSource(path: path), precision: precision)
            let ws = ForwardWorkspace(model: model, batch: 1, length: ids.count)
            ws.load([ids])
            model.forward(ws)
            return ws.logits.array
        }
        let reference = try logits(f.gguf, .fp32)
        XCTAssertLessThanOrEqual(zip(try logits(f.gguf, .asStored), reference).map { abs($0 - $1) }.max()!, 1e-4, "as stored")
        let nf4 = try logits(f.model, .nf4)
        var diff: Float = 0, norm: Float = 0
        for (a, b) in zip(nf4, reference) { diff += (a - b) * (a - b); norm += b * b }
        // NF4 moves these tiny random models' logits by 0.31 (qwen3), 0.35 (phi3) and 0.40 (mistral, the same shapes
        // unfused) relative; unrelated logits of the same size would differ by about √2.
        XCTAssertLessThan((diff / norm).squareRoot(), 0.6, "NF4")
        XCTAssertGreaterThan((diff / norm).squareRoot(), 0, "NF4 rounds")
    }

    /// Invariant: LongRoPE (Phi-3.5-mini, the 128k-context Phi-3), scaled down to an original context of 16 of 64:
    /// a 24-token batch uses the long factors and the attention factor √(1 + ln 4 / ln 16), 12 tokens alone the short
    /// ones — dtrain picks per pass by the largest position as transformers does — giving transformers' logits
    /// from safetensors and from a GGUF with `rope_factors_long` / `_short` (as llama.cpp's converter writes them);
    /// with the KV cache the choice follows the cache's length as in recomputation.
    func testPhi3LongRoPEMatchesTransformers() throws {
        let f = try FamilyFixture("phi3_longrope")
        let config = try ModelSource(path: f.model).config
        let long = try XCTUnwrap(config.longRope)
        XCTAssertEqual(long.originalMaxPositions, 16)
        XCTAssertEqual(Double(long.attentionFactor), (1 + log(4.0) / log(16.0)).squareRoot(), accuracy: 1e-6)
        XCTAssertEqual(try ModelSource(path: f.gguf).config.longRope, long)
        for path in [f.model, f.gguf] {
            XCTAssertLessThanOrEqual(try f.maxLogitDifference(path), 1e-3, "24 tokens, long factors: \(path)")
            let json = try loadJSON(f.directory + "/ids.json")
            let ids = Array((json["ids"] as! [[NSNumber]])[0].prefix(12)).map { Int32($0.intValue) }
            let expected = try SafetensorsFile(path: f.directory + "/expected.safetensors").floats("logits_short")
            let model = try LlamaModel(source: ModelSource(path: path))
            let ws = ForwardWorkspace(model: model, batch: 1, length: 12)
            ws.load([ids])
            model.forward(ws)
            XCTAssertFalse(ws.reachesLongContext)
            XCTAssertLessThanOrEqual(zip(ws.logits.array, expected).map { abs($0 - $1) }.max()!, 1e-3, "12 tokens, short factors: \(path)")
        }
        try assertCachedLogitsMatchRecompute(try LlamaModel(source: ModelSource(path: f.model)), tokens: 12)
    }

    /// Invariant: what dtrain does not build of Phi-3's relatives is refused by key, not run wrong: RoPE on part of
    /// each head (Phi-4-mini's partial_rotary_factor), LongRoPE factors of the wrong length, and a fused tensor of the
    /// wrong shape.
    func testPhi3VariantsDtrainDoesNotBuildAreRefused() throws {
        let f = try FamilyFixture("phi3")
        let dir = NSTemporaryDirectory() + "/phi3-variants-\(getpid())"
        try? FileManager.default.removeItem(atPath: dir)
        try FileManager.default.copyItem(atPath: f.model, toPath: dir)
        defer { try? FileManager.default.removeItem(atPath: dir) }
        let config = dir + "/config.json"
        let base = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: config))) as? [String: Any])
        for (change, fragment) in [(["rope_scaling": ["type": "longrope", "short_factor": [1.0], "long_factor": [1.0],
                                                     "original_max_position_embeddings": 16]], "rope_scaling.short_factor"),
                                   (["partial_rotary_factor": 0.75], "partial_rotary_factor"),
                                   (["intermediate_size": 80], "gate_up_proj.weight")] as [([String: Any], String)] {
            try JSONSerialization.data(withJSONObject: base.merging(change) { $1 }).write(to: URL(fileURLWithPath: config))
            XCTAssertThrowsError(try LlamaModel(source: ModelSource(path: dir))) { e in
                XCTAssertTrue("\(e)".contains(fragment), "\(e)")
            }
        }
    }

    /// Teacher-forced: 30 tokens fed through the KV cache (a chunk of 4, then one at a time, as generation
    /// does) give at every position the logits of one full forward over all of them, within 1e-4.
    func assertCachedLogitsMatchRecompute(_ model: LlamaModel, tokens count: Int = 30, file: StaticString = #filePath, line: UInt = #line) throws {
        let tokens: [Int32] = (0..<count).map { Int32(($0 * 37 + 11) % model.config.vocabSize) }
        let V = model.config.vocabSize
        let full = ForwardWorkspace(model: model, batch: 1, length: tokens.count)
        full.load([tokens])
        model.forward(full)
        let cache = KVCache(model: model, capacity: tokens.count)
        let ws = ForwardWorkspace(model: model, batch: 1, length: 4, withLogits: false)
        var row = [Float](repeating: 0, count: V)
        var done = 0, maxDiff: Float = 0
        while done < tokens.count {
            let n = done == 0 ? 4 : 1
            ws.setShape(batch: 1, length: n)
            for i in 0..<n { ws.tokens[i] = tokens[done + i] }
            model.forwardLayers(ws, cache: cache)
            for i in 0..<n {
                row.withUnsafeMutableBufferPointer { model.computeLogits(ws, firstRow: i, rows: 1, into: $0.baseAddress!) }
                for j in 0..<V { maxDiff = max(maxDiff, abs(row[j] - full.logits[(done + i) * V + j])) }
            }
            done += n
        }
        XCTAssertLessThanOrEqual(maxDiff, 1e-4, "cached vs full logits", file: file, line: line)
    }

    /// Invariant: without layer_types a gemma3_text config windows every layer but each 6th (or each
    /// sliding_window_pattern-th); a soft-capping key sets the cap (null: none), a non-positive one is an error naming it.
    func testGemma3ConfigKeys() throws {
        let dir = try FamilyFixture("gemma3").model
        let copy = temporaryDirectory()
        for f in try FileManager.default.contentsOfDirectory(atPath: dir) { try FileManager.default.copyItem(atPath: dir + "/" + f, toPath: copy + "/" + f) }
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/config.json"))) as? [String: Any])
        func load(_ change: ([String: Any]) -> [String: Any]) throws -> LlamaConfig {
            try JSONSerialization.data(withJSONObject: change(json)).write(to: URL(fileURLWithPath: copy + "/config.json"))
            return try ModelSource(path: copy).config
        }
        json["layer_types"] = nil
        json["num_hidden_layers"] = 7
        let six = try load { $0 }.architecture
        XCTAssertEqual((0..<7).map { six.window(layer: $0) != nil }, [true, true, true, true, true, false, true])
        let two = try load { var j = $0; j["sliding_window_pattern"] = 2; return j }.architecture
        XCTAssertEqual((0..<4).map { two.window(layer: $0) != nil }, [true, false, true, false])
        XCTAssertNil(try load { $0 }.architecture.finalLogitSoftcap)
        XCTAssertEqual(try load { var j = $0; j["final_logit_softcapping"] = 30.0; return j }.architecture.finalLogitSoftcap, 30)
        XCTAssertThrowsError(try load { var j = $0; j["attn_logit_softcapping"] = 0; return j }) { e in
            XCTAssertTrue("\(e)".contains("attn_logit_softcapping") && "\(e)".contains("a positive cap or null"), "\(e)")
        }
        XCTAssertThrowsError(try load { var j = $0; j["hidden_activation"] = "gelu"; return j }) { e in
            XCTAssertTrue("\(e)".contains("hidden_activation") && "\(e)".contains("gelu_pytorch_tanh"), "\(e)")
        }
    }

    /// Invariant: greedy generation with the KV cache (prefill in chunks of 4, window 5) picks the tokens that
    /// recomputing the whole sequence picks, well past the window (a 7-token prompt, 20 generated), and the
    /// cached logits equal the full forward's at every position.
    func testKVCacheMatchesFullRecomputePastTheWindow() throws {
        let model = try LlamaModel(source: ModelSource(path: try FamilyFixture("mistral_sliding").model))
        try assertCachedGenerationMatchesRecompute(model, prompt: [3, 14, 15, 9, 2, 6, 5], tokens: 20)
        try assertCachedLogitsMatchRecompute(model)
    }

    /// Invariant: families dtrain does not build are refused at load with the family's name and the reason,
    /// from config.json (model_type, or a non-causal-LM class) and from GGUF general.architecture.
    func testUnsupportedFamiliesAreRefusedByName() throws {
        let dir = TinyModel.write()
        let config = dir + "/config.json"
        let base = try String(contentsOfFile: config, encoding: .utf8)
        for (type, fragment) in [("mixtral", "mixture-of-experts"), ("qwen3_moe", "mixture-of-experts"), ("gemma3", "vision tower"),
                                 ("phimoe", "mixture-of-experts"), ("gpt_neox", "expected one of")] {
            try base.replacingOccurrences(of: "\"model_type\": \"llama\"", with: "\"model_type\": \"\(type)\"")
                .write(toFile: config, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try ModelSource(path: dir)) { e in
                XCTAssertTrue("\(e)".contains("model_type") && "\(e)".contains(type) && "\(e)".contains(fragment), "\(e)")
            }
        }
        try base.replacingOccurrences(of: "{", with: "{\"architectures\": [\"LlavaForConditionalGeneration\"], ")
            .write(toFile: config, atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ModelSource(path: dir)) { e in
            XCTAssertTrue("\(e)".contains("architectures") && "\(e)".contains("LlavaForConditionalGeneration"), "\(e)")
        }
    }

    /// Invariant: a qwen2 checkpoint turns its window on only with use_sliding_window, for the layers
    /// layer_types marks (or those from max_window_layers on); a bad layer_types entry is an error naming it.
    func testQwen2WindowFollowsItsConfigKeys() throws {
        var shape = TinyModel.Shape(); shape.architecture = "qwen2"; shape.bias = true
        let dir = TinyModel.write(shape)
        let config = dir + "/config.json"
        let base = try String(contentsOfFile: config, encoding: .utf8)
        func with(_ keys: String) throws -> LlamaConfig {
            try base.replacingOccurrences(of: "{", with: "{" + keys + ", ").write(toFile: config, atomically: true, encoding: .utf8)
            return try ModelSource(path: dir).config
        }
        XCTAssertNil(try with("\"sliding_window\": 4").architecture.slidingWindow)
        let maxLayers = try with("\"use_sliding_window\": true, \"sliding_window\": 4, \"max_window_layers\": 1").architecture
        XCTAssertEqual([maxLayers.window(layer: 0), maxLayers.window(layer: 1)], [nil, 4])
        let listed = try with("\"use_sliding_window\": true, \"sliding_window\": 3, \"layer_types\": [\"sliding_attention\", \"full_attention\"]").architecture
        XCTAssertEqual([listed.window(layer: 0), listed.window(layer: 1)], [3, nil])
        XCTAssertThrowsError(try with("\"use_sliding_window\": true, \"layer_types\": [\"chunked\", \"full_attention\"]")) { e in
            XCTAssertTrue("\(e)".contains("layer_types[0]") && "\(e)".contains("chunked"), "\(e)")
        }
    }
}

/// Greedy generation with the KV cache equals greedy decoding by full recomputation of every prefix; with
/// `varied`, the continuation must also use more than two distinct tokens (a degenerate one would test little).
func assertCachedGenerationMatchesRecompute(_ model: LlamaModel, prompt: [Int32], tokens: Int, varied: Bool = true,
                                            file: StaticString = #filePath, line: UInt = #line) throws {
    let generator = Generator(model: model, capacity: prompt.count + tokens + 1, chunk: 4)
    let cached = generator.generate(prompt: prompt, maxTokens: tokens, sampling: SamplingOptions(), stop: [])
    var sequence = prompt
    for _ in 0..<tokens {
        let ws = ForwardWorkspace(model: model, batch: 1, length: sequence.count)
        ws.load([sequence])
        model.forward(ws)
        let row = ws.logits.pointer + (sequence.count - 1) * model.config.vocabSize
        var best = 0
        for j in 1..<model.config.vocabSize where row[j] > row[best] { best = j }
        sequence.append(Int32(best))
    }
    XCTAssertEqual(cached, Array(sequence.dropFirst(prompt.count)), file: file, line: line)
    if varied { XCTAssertGreaterThan(Set(cached).count, 2, "a degenerate continuation would not test much", file: file, line: line) }
}
