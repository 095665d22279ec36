// Prompt tuning (Lester et al. 2021) as PEFT does it: num_virtual_tokens embeddings prepended at the input
// embeddings; they count as positions and get no labels. Only `prompt_embeddings [virtual tokens, C]` is trained —
// the gradient stops at the input embeddings.
import DTFormats
import DTKernels
import DTModel
import DTTokenizer
import Foundation

public enum PromptInit: String, Sendable, CaseIterable {
    case text = "TEXT", sampleVocab = "SAMPLE_VOCAB", random = "RANDOM"
}

public final class PromptTuningAdapter: TrainableAdapter {
    public let arena: ParameterArena
    public let virtualTokens: Int
    public let hidden: Int
    public var initMethod: PromptInit = .random
    public var initText = ""
    let entry: ParameterArena.Entry
    let layers: Int, heads: Int

    public init(model: LlamaModel, virtualTokens: Int) {
        precondition(virtualTokens >= 1)
        self.virtualTokens = virtualTokens
        hidden = model.config.hiddenSize
        layers = model.config.layers; heads = model.config.heads
        arena = ParameterArena([(name: "prompt_embeddings", shape: [virtualTokens, hidden])])
        entry = arena.entry("prompt_embeddings")!
    }

    /// Initialises as PEFT: TEXT = embeddings of the tokenized text repeated/cut to the number of virtual tokens; SAMPLE_VOCAB = rows
    /// of random vocabulary ids; RANDOM = N(0, 1) (torch.nn.Embedding's default).
    public func initialise(_ method: PromptInit, text: String, model: LlamaModel, tokenizer: Tokenizer, seed: UInt64) throws {
        initMethod = method; initText = text
        let p = arena.value(entry)
        var rng = SplitMix64(seed: seed)
        switch method {
        case .text:
            var ids = tokenizer.encode(text)
            guard !ids.isEmpty else { throw CommandError("prompt_init_text is empty: TEXT initialisation needs some text") }
            while ids.count < virtualTokens { ids += ids }
            model.embedding.lookup(Array(ids.prefix(virtualTokens)), count: virtualTokens, into: p, scratch: model.makeProductScratch(rows: 0))
        case .sampleVocab:
            let ids = (0..<virtualTokens).map { _ in Int32(rng.next() % UInt64(model.config.vocabSize)) }
            model.embedding.lookup(ids, count: virtualTokens, into: p, scratch: model.makeProductScratch(rows: 0))
        case .random:
            for i in 0..<entry.count {
                let u1 = max(Double(rng.next() >> 11) / Double(1 << 53), 1e-300), u2 = Double(rng.next() >> 11) / Double(1 << 53)
                p[i] = Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
            }
        }
    }

    public func embedVirtualTokens(stream: UnsafeMutablePointer<Float>, batch: Int, length: Int) {
        let p = arena.value(entry)
        for b in 0..<batch { (stream + b * length * hidden).update(from: p, count: virtualTokens * hidden) }
    }

    public func backwardEmbeddings(dstream: UnsafePointer<Float>, batch: Int, length: Int) {
        let g = arena.gradient(entry)
        for b in 0..<batch { Vector.add(g, dstream + b * length * hidden, count: virtualTokens * hidden) }
    }

    public func prepare(training: Bool, step: Int, rowKeys: [UInt64]) {}

    public func peftFiles(baseModel: String) throws -> [(String, Data)] {
        var config: [String: Any] = [
            "peft_type": "PROMPT_TUNING", "task_type": "CAUSAL_LM", "base_model_name_or_path": baseModel,
            "num_virtual_tokens": virtualTokens, "token_dim": hidden, "num_transformer_submodules": 1,
            "num_attention_heads": heads, "num_layers": layers, "prompt_tuning_init": initMethod.rawValue,
            "prompt_tuning_init_text": initMethod == .text ? initText : NSNull(), "tokenizer_name_or_path": NSNull(),
            "inference_mode": true, "revision": NSNull(),
        ]
        if initMethod == .text { config["tokenizer_name_or_path"] = baseModel }
        return [("adapter_config.json", try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])),
                ("adapter_model.safetensors", PEFTFormat.tensors(arena))]
    }

    public static func load(_ dir: String, model: LlamaModel) throws -> PromptTuningAdapter {
        let configPath = (dir as NSString).appendingPathComponent("adapter_config.json")
        let json = JSONFields(file: configPath, object: try PEFTFormat.readConfig(dir))
        let v = try json.integer("num_virtual_tokens", in: 1...(1 << 16))
        let C = model.config.hiddenSize
        let dim = try json.integer("token_dim", default: C)
        guard dim == C else { throw FormatError.key(configPath, "token_dim", "expected the model's hidden size \(C), found \(dim)") }
        let sub = try json.integer("num_transformer_submodules", default: 1)
        guard sub == 1 else { throw FormatError.key(configPath, "num_transformer_submodules", "expected 1 (decoder-only), found \(sub)") }
        let adapter = PromptTuningAdapter(model: model, virtualTokens: v)
        let path = (dir as NSString).appendingPathComponent("adapter_model.safetensors")
        let file = try SafetensorsFile(path: path)
        guard let t = file.tensors["prompt_embeddings"] else {
            throw FormatError.key(path, "prompt_embeddings", "missing tensor")
        }
        guard t.shape == [v, model.config.hiddenSize] else {
            throw FormatError.key(path, "prompt_embeddings", "expected shape [\(v), \(model.config.hiddenSize)], found \(t.shape)")
        }
        let values = try file.floats("prompt_embeddings")
        try FormatError.requireFinite(values, file: path, key: "prompt_embeddings")
        adapter.arena.set("prompt_embeddings", values)
        adapter.initMethod = PromptInit(rawValue: (json.object["prompt_tuning_init"] as? String) ?? "RANDOM") ?? .random
        adapter.initText = (json.object["prompt_tuning_init_text"] as? String) ?? ""
        return adapter
    }
}
