// The forward pass against Hugging Face transformers: the default model (golden logits and NLL made by
// scripts/make_fixtures.py from the same GGUF) and tiny random llama / llama3-rope / qwen2 / mistral models,
// from safetensors (single and sharded) and from GGUF with llama.cpp's Q/K row permutation.
import DTFormats
import DTKernels
import DTModel
import Foundation
import TestSupport
import XCTest

func fixturePath(_ name: String) throws -> String {
    try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/\(name)", ofType: nil), "fixture \(name) missing: run scripts/make_fixtures.py")
}

func loadJSON(_ path: String) throws -> [String: Any] {
    try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
}

final class GoldenLogitsTests: XCTestCase {
    /// Invariant: on three real texts of ≥ 200 tokens, dtrain's logits equal transformers' within 1e-3 and
    /// the mean NLL within 1e-4.
    func testDefaultModelMatchesTransformers() throws {
        guard let path = TestPaths.defaultModel else {
            if TestPaths.modelRequired { XCTFail("default model missing") }
            return
        }
        let golden = try loadJSON(try fixturePath("smollm2_golden.json"))
        let tensors = try SafetensorsFile(path: try fixturePath("smollm2_golden.safetensors"))
        let model = try LlamaModel(source: ModelSource(path: path), maxPositions: 512)
        let V = model.config.vocabSize
        let texts = try XCTUnwrap(golden["texts"] as? [[String: Any]])
        XCTAssertEqual(texts.count, 3)
        for (i, text) in texts.enumerated() {
            let ids = (text["ids"] as! [NSNumber]).map { Int32($0.intValue) }
            XCTAssertGreaterThanOrEqual(ids.count, 200)
            let ws = ForwardWorkspace(model: model, batch: 1, length: ids.count)
            ws.load([ids])
            model.forward(ws)
            var maxDiff: Float = 0
            let head = try tensors.floats("logits_head_\(i)")
            let width = head.count / ids.count
            for t in 0..<ids.count { for j in 0..<width { maxDiff = max(maxDiff, abs(ws.logits[t * V + j] - head[t * width + j])) } }
            let full = try tensors.floats("logits_full_\(i)")
            for (k, p) in (text["positions"] as! [NSNumber]).enumerated() {
                for j in 0..<V { maxDiff = max(maxDiff, abs(ws.logits[p.intValue * V + j] - full[k * V + j])) }
            }
            XCTAssertLessThanOrEqual(maxDiff, 1e-3, "text \(i): max |logit difference|")
            var nll = 0.0
            for t in 0..<(ids.count - 1) {
                nll += Softmax.logSumExp(ws.logits.pointer + t * V, count: V) - Double(ws.logits[t * V + Int(ids[t + 1])])
            }
            nll /= Double(ids.count - 1)
            XCTAssertEqual(nll, (text["mean_nll"] as! NSNumber).doubleValue, accuracy: 1e-4, "text \(i): mean NLL")
        }
    }

    func tinyLogits(_ modelPath: String, expected: String, precision: WeightPrecision = .fp32,
                    tolerance: Float = 1e-4, file: StaticString = #filePath, line: UInt = #line) throws {
        let json = try loadJSON(expected)
        let ids = (json["ids"] as! [[NSNumber]]).map { $0.map { Int32($0.intValue) } }
        let mask = (json["attention_mask"] as! [[NSNumber]]).map { $0.map(\.intValue) }
        let logits = json["logits"] as! [[[NSNumber]]]
        let model = try LlamaModel(source: ModelSource(path: modelPath), precision: precision)
        let V = model.config.vocabSize
        let ws = ForwardWorkspace(model: model, batch: ids.count, length: ids[0].count)
        ws.load(zip(ids, mask).map { seq, m in Array(seq.prefix(m.reduce(0, +))) })
        model.forward(ws)
        var maxDiff: Float = 0
        for b in 0..<ids.count { for t in 0..<ids[b].count where mask[b][t] == 1 { for j in 0..<V {
            maxDiff = max(maxDiff, abs(ws.logits[(b * ws.length + t) * V + j] - logits[b][t][j].floatValue))
        } } }
        XCTAssertLessThanOrEqual(maxDiff, tolerance, "\(modelPath)", file: file, line: line)
    }

    /// Invariant: each architecture's forward (GQA, padding mask, tied/untied head, q/k/v bias, Llama-3 RoPE
    /// scaling) equals transformers' on a random tiny model.
    func testTinyArchitecturesMatchTransformers() throws {
        for name in ["llama", "llama3rope", "qwen2", "mistral"] {
            let dir = try fixturePath("tiny/\(name)")
            try tinyLogits(dir, expected: dir + "/expected.json")
        }
    }

    /// Invariant: a sharded checkpoint (model.safetensors.index.json) loads to the same model.
    func testShardedSafetensorsLoadTheSameModel() throws {
        let dir = try fixturePath("tiny/llama_sharded")
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/model.safetensors.index.json"))
        try tinyLogits(dir, expected: try fixturePath("tiny/llama/expected.json"))
    }

    /// Invariant: a GGUF written with llama.cpp's Q/K row permutation gives HF's logits (dtrain un-permutes),
    /// in fp32 and with the weights kept as stored (Q8_0 dequantized per layer).
    func testGGUFWithPermutedQKMatchesTransformers() throws {
        try tinyLogits(try fixturePath("tiny/llama.gguf.bin"), expected: try fixturePath("tiny/llama/expected.json"))
        try tinyLogits(try fixturePath("tiny/llama_q8.gguf.bin"), expected: try fixturePath("tiny/llama_q8_expected.json"))
        // QLoRA's path: Q8_0 blocks kept, the embedding and untied LM head in chunks of stored rows.
        try tinyLogits(try fixturePath("tiny/llama_q8.gguf.bin"), expected: try fixturePath("tiny/llama_q8_expected.json"),
                       precision: .asStored)
        try tinyLogits(try fixturePath("tiny/llama_q8.gguf.bin"), expected: try fixturePath("tiny/llama_q8_expected.json"), precision: .asStored)
    }

    /// Invariant: generation with the KV cache picks the same tokens as recomputing the whole sequence.
    func testKVCacheMatchesFullRecompute() throws {
        let model = try LlamaModel(source: ModelSource(path: TinyModel.write()))
        let prompt: [Int32] = [3, 14, 15, 9, 2, 6]
        try assertCachedGenerationMatchesRecompute(model, prompt: prompt, tokens: 10, varied: false)
    }

    /// Invariant: a missing or mis-shaped tensor is an error naming the tensor and the expected shape.
    func testMissingAndMisshapedTensorsAreReported() throws {
        let dir = TinyModel.write()
        let st = try SafetensorsFile(path: dir + "/model.safetensors")
        var entries: [SafetensorsWriter.Entry] = []
        for name in st.tensors.keys.sorted() where name != "model.layers.1.mlp.up_proj.weight" {
            var shape = st.tensors[name]!.shape
            var values = try st.floats(name)
            if name == "model.layers.0.self_attn.k_proj.weight" { shape = [shape[0] / 2, shape[1]]; values = Array(values.prefix(values.count / 2)) }
            entries.append(.init(name: name, shape: shape, values: values))
        }
        try SafetensorsWriter.encode(entries).write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        XCTAssertThrowsError(try LlamaModel(source: ModelSource(path: dir))) { e in
            XCTAssertTrue("\(e)".contains("model.layers.0.self_attn.k_proj.weight") && "\(e)".contains("expected shape [16, 32]"), "\(e)")
        }
    }

    func testMalformedConfigIsReported() throws {
        let dir = TinyModel.write()
        try "{\"model_type\": \"llama\", \"hidden_size\": 32".write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ModelSource(path: dir)) { XCTAssertTrue("\($0)".contains("config.json") && "\($0)".contains("malformed")) }
        try "{\"model_type\": \"gpt_neox\", \"hidden_size\": 32, \"vocab_size\": 10, \"intermediate_size\": 8, \"num_hidden_layers\": 1, \"num_attention_heads\": 2}"
            .write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        XCTAssertThrowsError(try ModelSource(path: dir)) { XCTAssertTrue("\($0)".contains("gpt_neox")) }
    }
}
