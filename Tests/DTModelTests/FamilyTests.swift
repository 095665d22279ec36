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
    func maxLogitDifference(_ path: String, compute: ComputePrecision = .fp32) throws -> Float {
        let json = try loadJSON(directory + "/ids.json")
        let ids = (json["ids"] as! [[NSNumber]]).map { $0.map { Int32($0.intValue) } }
        let mask = (json["attention_mask"] as! [[NSNumber]]).map { $0.map(\.intValue) }
        let expected = try SafetensorsFile(path: directory + "/expected.safetensors").floats("logits")
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

    /// Invariant: greedy generation with the KV cache (prefill in chunks of 4, window 5) picks the tokens that
    /// recomputing the whole sequence picks, well past the window (a 7-token prompt, 20 generated).
    func testKVCacheMatchesFullRecomputePastTheWindow() throws {
        let model = try LlamaModel(source: ModelSource(path: try FamilyFixture("mistral_sliding").model))
        try assertCachedGenerationMatchesRecompute(model, prompt: [3, 14, 15, 9, 2, 6, 5], tokens: 20)
    }

    func assertCachedGenerationMatchesRecompute(_ model: LlamaModel, prompt: [Int32], tokens: Int,
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
        XCTAssertGreaterThan(Set(cached).count, 2, "a degenerate continuation would not test much", file: file, line: line)
    }

    /// Invariant: families dtrain does not build are refused at load with the family's name and the reason,
    /// from config.json (model_type, or a non-causal-LM class) and from GGUF general.architecture.
    func testUnsupportedFamiliesAreRefusedByName() throws {
        let dir = TinyModel.write()
        let config = dir + "/config.json"
        let base = try String(contentsOfFile: config, encoding: .utf8)
        for (type, fragment) in [("mixtral", "mixture-of-experts"), ("qwen3_moe", "mixture-of-experts"), ("gpt_neox", "expected one of")] {
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
