// Hyper-parameters of a Llama-family model (llama, mistral, qwen2), read from GGUF metadata or HF config.json.
import DTFormats
import Foundation

public struct LlamaConfig: Equatable, Sendable {
    public var architecture: String
    public var vocabSize: Int
    public var hiddenSize: Int
    public var intermediateSize: Int
    public var layers: Int
    public var heads: Int
    public var kvHeads: Int
    public var headDim: Int
    public var rmsNormEps: Float
    public var ropeTheta: Float
    /// Llama-3 style RoPE scaling (HF `rope_scaling` with rope_type "llama3").
    public var ropeScaling: Llama3RopeScaling?
    public var maxPositions: Int
    public var tiedEmbeddings: Bool
    /// q/k/v projections carry a bias (qwen2).
    public var attentionBias: Bool

    public struct Llama3RopeScaling: Equatable, Sendable {
        public var factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositions: Int
    }

    /// Inverse RoPE frequencies (D/2), with Llama-3 scaling applied as HF's `_compute_llama3_parameters` does.
    public func ropeInverseFrequencies(freqFactors: [Float]? = nil) -> [Float] {
        let half = headDim / 2
        var inv = (0..<half).map { i in Float(1.0 / pow(Double(ropeTheta), Double(2 * i) / Double(headDim))) }
        if let factors = freqFactors {
            for i in 0..<half { inv[i] /= factors[i] }
        } else if let s = ropeScaling {
            let lowWavelen = Float(s.originalMaxPositions) / s.lowFreqFactor
            let highWavelen = Float(s.originalMaxPositions) / s.highFreqFactor
            for i in 0..<half {
                let wavelen = 2 * Float.pi / inv[i]
                if wavelen > lowWavelen {
                    inv[i] /= s.factor
                } else if wavelen >= highWavelen {
                    let smooth = (Float(s.originalMaxPositions) / wavelen - s.lowFreqFactor) / (s.highFreqFactor - s.lowFreqFactor)
                    inv[i] = (1 - smooth) * inv[i] / s.factor + smooth * inv[i]
                }
            }
        }
        return inv
    }

    /// Parameters in the frozen base (embedding counted once when tied).
    public var parameterCount: Int {
        let attention = hiddenSize * heads * headDim * 2 + hiddenSize * kvHeads * headDim * 2
            + (attentionBias ? heads * headDim + 2 * kvHeads * headDim : 0)
        let mlp = 3 * hiddenSize * intermediateSize
        let perLayer = attention + mlp + 2 * hiddenSize
        return vocabSize * hiddenSize * (tiedEmbeddings ? 1 : 2) + layers * perLayer + hiddenSize
    }

    static let supported: Set<String> = ["llama", "mistral", "qwen2"]

    func validate(file: String) throws {
        guard Self.supported.contains(architecture) else {
            throw FormatError.key(file, "architecture", "expected one of llama, mistral, qwen2; found '\(architecture)'")
        }
        let checks: [(String, Int)] = [("vocab size", vocabSize), ("hidden size", hiddenSize), ("intermediate size", intermediateSize),
                                       ("layer count", layers), ("head count", heads), ("kv head count", kvHeads), ("head dim", headDim)]
        for (name, value) in checks where value <= 0 || value > 1 << 24 {
            throw FormatError.key(file, name, "expected a positive size, found \(value)")
        }
        guard heads % kvHeads == 0 else {
            throw FormatError.key(file, "kv head count", "head count \(heads) is not a multiple of kv head count \(kvHeads)")
        }
        guard headDim % 2 == 0 else { throw FormatError.key(file, "head dim", "expected an even head dim, found \(headDim)") }
    }
}

extension LlamaConfig {
    /// From GGUF metadata (`<arch>.block_count` …).
    public init(gguf: GGUFFile) throws {
        let file = gguf.path
        guard let arch = gguf.metadata["general.architecture"]?.string else {
            throw FormatError.key(file, "general.architecture", "missing")
        }
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let v = gguf.metadata["\(arch).\(key)"]?.int { return v }
            if let fallback { return fallback }
            throw FormatError.key(file, "\(arch).\(key)", "missing or not an integer")
        }
        func float(_ key: String, _ fallback: Double) throws -> Float {
            guard let value = gguf.metadata["\(arch).\(key)"] else { return Float(fallback) }
            guard let d = value.double else { throw FormatError.key(file, "\(arch).\(key)", "expected a number") }
            return Float(d)
        }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        let vocab = try gguf.metadata["\(arch).vocab_size"]?.int
            ?? gguf.metadata["tokenizer.ggml.tokens"]?.array?.count
            ?? gguf.tensor("token_embd.weight").map { $0.dims[1] }
            ?? { throw FormatError.key(file, "\(arch).vocab_size", "missing (and no tokenizer or token_embd.weight)") }()
        self.init(architecture: arch, vocabSize: vocab, hiddenSize: hidden,
                  intermediateSize: try int("feed_forward_length"), layers: try int("block_count"),
                  heads: heads, kvHeads: try int("attention.head_count_kv", heads),
                  headDim: try int("attention.key_length", hidden / max(heads, 1)),
                  rmsNormEps: try float("attention.layer_norm_rms_epsilon", 1e-5),
                  ropeTheta: try float("rope.freq_base", 10000), ropeScaling: nil,
                  maxPositions: try int("context_length", 2048),
                  tiedEmbeddings: gguf.tensor("output.weight") == nil,
                  attentionBias: gguf.tensor("blk.0.attn_q.bias") != nil)
        try validate(file: file)
    }

    /// From a Hugging Face config.json.
    public init(hfConfig path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw FormatError(file: path, location: "", "cannot read: \(error.localizedDescription)")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(file: path, location: "", "expected a JSON object (malformed config.json)")
        }
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let v = json[key] as? NSNumber { return v.intValue }
            if let fallback { return fallback }
            throw FormatError.key(path, key, "missing or not a number")
        }
        func float(_ key: String, _ fallback: Double) throws -> Float {
            guard let v = json[key] else { return Float(fallback) }
            guard let n = v as? NSNumber else { throw FormatError.key(path, key, "expected a number") }
            return n.floatValue
        }
        guard let modelType = json["model_type"] as? String else { throw FormatError.key(path, "model_type", "missing") }
        let hidden = try int("hidden_size"), heads = try int("num_attention_heads")
        var scaling: Llama3RopeScaling?
        // transformers ≥ 5 writes the scaling (and rope_theta) under rope_parameters; older files use rope_scaling.
        if let rs = (json["rope_scaling"] as? [String: Any]) ?? (json["rope_parameters"] as? [String: Any]) {
            let kind = (rs["rope_type"] as? String) ?? (rs["type"] as? String) ?? ""
            guard kind == "llama3" || kind == "default" else {
                throw FormatError.key(path, "rope_scaling.rope_type", "expected 'llama3' or 'default', found '\(kind)'")
            }
            if kind == "llama3" {
                func num(_ k: String) throws -> NSNumber {
                    guard let n = rs[k] as? NSNumber else { throw FormatError.key(path, "rope_scaling.\(k)", "missing") }
                    return n
                }
                scaling = Llama3RopeScaling(factor: try num("factor").floatValue, lowFreqFactor: try num("low_freq_factor").floatValue,
                                            highFreqFactor: try num("high_freq_factor").floatValue,
                                            originalMaxPositions: try num("original_max_position_embeddings").intValue)
            }
        }
        var theta = try float("rope_theta", 10000)
        if let params = json["rope_parameters"] as? [String: Any], let t = params["rope_theta"] as? NSNumber { theta = t.floatValue }
        self.init(architecture: modelType, vocabSize: try int("vocab_size"), hiddenSize: hidden,
                  intermediateSize: try int("intermediate_size"), layers: try int("num_hidden_layers"),
                  heads: heads, kvHeads: try int("num_key_value_heads", heads),
                  headDim: (json["head_dim"] as? NSNumber)?.intValue ?? hidden / max(heads, 1),
                  rmsNormEps: try float("rms_norm_eps", 1e-6), ropeTheta: theta, ropeScaling: scaling,
                  maxPositions: try int("max_position_embeddings", 2048),
                  tiedEmbeddings: (json["tie_word_embeddings"] as? Bool) ?? false,
                  attentionBias: (json["attention_bias"] as? Bool) ?? (modelType == "qwen2"))
        try validate(file: path)
    }
}
