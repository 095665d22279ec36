// config.json for a Hugging Face directory of a model read from GGUF (merge --format hf): the keys
// transformers' LlamaForCausalLM / Qwen2ForCausalLM read, from the same LlamaConfig dtrain runs with.
import DTFormats
import Foundation

public enum HFConfigExport {
    /// The shortest decimal that reads back as this Float (1e-05, not 9.99999974738e-06).
    static func decimal(_ x: Float) -> Double { Double("\(x)")! }

    public static func configJSON(_ c: LlamaConfig, gguf: GGUFFile, torchDtype: String, extra: [String: Any] = [:]) throws -> Data {
        guard c.ropeScaling == nil, gguf.tensor("rope_freqs.weight") == nil else {
            throw FormatError.key(gguf.path, "rope_freqs.weight", "Llama-3.1 RoPE scaling cannot be written to config.json yet")
        }
        let classes = ["llama": "LlamaForCausalLM", "qwen2": "Qwen2ForCausalLM", "mistral": "MistralForCausalLM", "qwen3": "Qwen3ForCausalLM",
                       "phi3": "Phi3ForCausalLM"]
        guard let cls = classes[c.architecture.name] else {
            throw FormatError.key(gguf.path, "general.architecture", "no Hugging Face class for '\(c.architecture.name)'")
        }
        var json: [String: Any] = [
            "architectures": [cls], "model_type": c.architecture.name, "hidden_size": c.hiddenSize,
            "intermediate_size": c.intermediateSize, "num_hidden_layers": c.layers, "num_attention_heads": c.heads,
            "num_key_value_heads": c.kvHeads, "head_dim": c.headDim, "hidden_act": "silu",
            "max_position_embeddings": c.maxPositions, "rms_norm_eps": decimal(c.rmsNormEps), "rope_theta": decimal(c.ropeTheta),
            "vocab_size": c.vocabSize, "tie_word_embeddings": c.tiedEmbeddings, "attention_bias": c.architecture.qkvBias,
            "mlp_bias": false, "initializer_range": 0.02, "use_cache": true, "torch_dtype": torchDtype,
        ]
        for (key, hf) in [("tokenizer.ggml.bos_token_id", "bos_token_id"), ("tokenizer.ggml.eos_token_id", "eos_token_id"),
                          ("tokenizer.ggml.padding_token_id", "pad_token_id")] {
            if let id = gguf.metadata[key]?.int { json[hf] = id }
        }
        if c.architecture.name == "qwen2" { json["use_sliding_window"] = false }
        if c.architecture.name == "mistral" || c.architecture.name == "phi3" { json["sliding_window"] = c.architecture.slidingWindow ?? NSNull() }
        if let long = c.longRope {   // LongRoPE as transformers reads it, with the GGUF's attention factor stated
            json["original_max_position_embeddings"] = long.originalMaxPositions
            json["rope_scaling"] = ["type": "longrope", "short_factor": long.short.map { decimal($0) }, "long_factor": long.long.map { decimal($0) },
                                    "attention_factor": decimal(long.attentionFactor)]
        }
        for (k, v) in extra { json[k] = v }
        return try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])
    }
}
