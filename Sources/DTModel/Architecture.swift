// The architecture description: how a model family differs from plain Llama, as data. One value per
// family (the table below), read from config.json `model_type` or GGUF `general.architecture`, then
// resolved against the checkpoint's own keys (bias, sliding window); the one forward/backward pair reads it.
// Families dtrain knows but does not build (mixture of experts, vision towers, …) are refused by name.
import DTFormats

public struct Architecture: Equatable, Sendable {
    /// The family's HF `model_type` (llama, mistral, qwen2, qwen3).
    public var name: String
    /// The architecture string llama.cpp's converter writes to a GGUF of this family (mistral: llama).
    public var ggufName: String
    /// llama.cpp stores q/k rows permuted for adjacent-pair RoPE (LlamaCppRowOrder) in this family's GGUF.
    public var ggufPermutesQK: Bool
    /// q/k/v projections carry a bias (qwen2; any family whose config says `attention_bias`).
    public var qkvBias: Bool
    /// Per-head RMSNorm of q and k (weights `self_attn.q_norm`/`k_norm` of size D) before RoPE (qwen3).
    public var qkNorm: Bool
    /// Attention of a windowed layer sees only the last `slidingWindow` keys (key j visible to query i iff
    /// i − window < j ≤ i); nil: full causal attention everywhere.
    public var slidingWindow: Int?
    /// Which layers use the window (see `window(layer:)`).
    public var windowedLayers: WindowedLayers
    /// How the family's config.json states its window.
    public var windowKeys: WindowKeys
    /// RMSNorm weights as stored in HF checkpoints are w (0) or 1 + w (1: Gemma); llama.cpp's converter stores
    /// the shifted values, so GGUF norms are used as they are.
    public var normWeightOffset: Float = 0
    /// Sandwich norms (Gemma): the attention and MLP outputs are normed (`post_attention_layernorm`,
    /// `post_feedforward_layernorm`) before their residual adds; the MLP's input norm is `pre_feedforward_layernorm`.
    public var sandwichNorms = false
    /// The token embeddings are scaled by √hidden (Gemma).
    public var scalesEmbeddings = false
    /// The MLP's gate activation.
    public var activation: Activation = .swiGLU
    /// Attention scores are scaled by 1/√queryScale (HF `query_pre_attn_scalar`) instead of 1/√D; nil: 1/√D.
    public var queryScale: Float?
    /// RoPE base of the windowed layers (Gemma 3 `rope_local_base_freq`); nil: the model's base everywhere.
    public var localRopeTheta: Float?
    /// Attention scores (after scaling) pass through cap · tanh(s / cap) before the mask and softmax (Gemma 2
    /// `attn_logit_softcapping`); nil: no capping.
    public var attentionSoftcap: Float?
    /// The LM head's logits pass through cap · tanh(z / cap) (Gemma 2 `final_logit_softcapping`); nil: no capping.
    public var finalLogitSoftcap: Float?
    /// q/k/v are stored as one `qkv_proj` and gate/up as one `gate_up_proj` (Phi-3; GGUF `attn_qkv`, and `ffn_up` of
    /// 2·I rows): loading takes each projection as a row range of its fused tensor (TensorNames.FusedModule), and
    /// LoRA adapters have one module per fused tensor, as PEFT makes them (one A shared by the parts, B stacked).
    public var fusedProjections = false

    public enum Activation: String, Equatable, Sendable {
        case swiGLU = "silu", geGLUTanh = "gelu_pytorch_tanh"
    }

    public enum WindowKeys: Equatable, Sendable {
        /// The family has no sliding window.
        case none
        /// `sliding_window` (an integer, or null for none) applies to every layer (mistral).
        case everyLayer
        /// `use_sliding_window` turns `sliding_window` on for the layers `layer_types` marks "sliding_attention",
        /// or without that list for layers ≥ `max_window_layers` (qwen2, qwen3).
        case optIn
        /// `layer_types`, or without it every layer but each `pattern`-th (`sliding_window_pattern`), is windowed
        /// with `sliding_window` (gemma3); its GGUF states the window and llama.cpp fixes the pattern.
        case layerTypes(pattern: Int)
    }

    public enum WindowedLayers: Equatable, Sendable {
        /// Every layer (mistral).
        case all
        /// Layer l is windowed iff flags[l] (HF `layer_types`, or qwen2's `max_window_layers` rule).
        case listed([Bool])
    }

    /// The window of layer `l`'s attention, or nil for full causal attention.
    public func window(layer l: Int) -> Int? {
        guard let w = slidingWindow else { return nil }
        switch windowedLayers {
        case .all: return w
        case .listed(let flags): return flags[l] ? w : nil
        }
    }

    /// Whether any layer is windowed.
    public var hasSlidingWindow: Bool {
        guard slidingWindow != nil else { return false }
        if case .listed(let flags) = windowedLayers { return flags.contains(true) }
        return true
    }

    public static let llama = Architecture(name: "llama", ggufName: "llama", ggufPermutesQK: true, qkvBias: false, qkNorm: false,
                                           slidingWindow: nil, windowedLayers: .all, windowKeys: .none)
    public static let mistral = Architecture(name: "mistral", ggufName: "llama", ggufPermutesQK: true, qkvBias: false, qkNorm: false,
                                             slidingWindow: nil, windowedLayers: .all, windowKeys: .everyLayer)
    public static let qwen2 = Architecture(name: "qwen2", ggufName: "qwen2", ggufPermutesQK: false, qkvBias: true, qkNorm: false,
                                           slidingWindow: nil, windowedLayers: .all, windowKeys: .optIn)
    public static let qwen3 = Architecture(name: "qwen3", ggufName: "qwen3", ggufPermutesQK: false, qkvBias: false, qkNorm: true,
                                           slidingWindow: nil, windowedLayers: .all, windowKeys: .optIn)

    public static let gemma2 = Architecture(name: "gemma2", ggufName: "gemma2", ggufPermutesQK: false, qkvBias: false, qkNorm: false,
                                            slidingWindow: 4096, windowedLayers: .all, windowKeys: .layerTypes(pattern: 2),
                                            normWeightOffset: 1, sandwichNorms: true, scalesEmbeddings: true, activation: .geGLUTanh,
                                            queryScale: nil, localRopeTheta: nil, attentionSoftcap: 50, finalLogitSoftcap: 30)
    public static let gemma3 = Architecture(name: "gemma3_text", ggufName: "gemma3", ggufPermutesQK: false, qkvBias: false, qkNorm: true,
                                            slidingWindow: 4096, windowedLayers: .all, windowKeys: .layerTypes(pattern: 6),
                                            normWeightOffset: 1, sandwichNorms: true, scalesEmbeddings: true, activation: .geGLUTanh,
                                            queryScale: nil, localRopeTheta: 10000)

    public static let phi3 = Architecture(name: "phi3", ggufName: "phi3", ggufPermutesQK: false, qkvBias: false, qkNorm: false,
                                          slidingWindow: nil, windowedLayers: .all, windowKeys: .everyLayer, fusedProjections: true)

    /// The built families by HF `model_type`.
    public static let families: [String: Architecture] = ["llama": llama, "mistral": mistral, "qwen2": qwen2, "qwen3": qwen3,
                                                          "gemma2": gemma2, "gemma3_text": gemma3, "phi3": phi3]
    /// GGUF architecture strings that are not an HF model_type.
    static let ggufFamilies: [String: Architecture] = ["gemma3": gemma3]

    /// Families (HF model_type or GGUF architecture) dtrain recognises but does not build, with the reason.
    static let refused: [String: String] = [
        "mixtral": "mixture-of-experts layers are not built by dtrain",
        "qwen2_moe": "mixture-of-experts layers are not built by dtrain",
        "qwen3_moe": "mixture-of-experts layers are not built by dtrain",
        "qwen2moe": "mixture-of-experts layers are not built by dtrain",
        "qwen3moe": "mixture-of-experts layers are not built by dtrain",
        "llama4": "mixture-of-experts layers and chunked attention are not built by dtrain",
        "gemma": "Gemma 1 is not built yet (gemma2 and gemma3_text are)",
        "gemma3": "Gemma 3's vision tower is not built (its text model, model_type gemma3_text, is)",
        "phimoe": "mixture-of-experts layers are not built by dtrain",
        "phi3v": "vision towers are not built by dtrain",
        "qwen2_vl": "vision towers are not built by dtrain",
        "llava": "vision towers are not built by dtrain",
        "mllama": "vision towers are not built by dtrain",
    ]

    static var supportedList: String { families.keys.sorted().joined(separator: ", ") }

    /// The family of HF `model_type` (config.json at `file`), or a typed error naming the key.
    public static func hf(modelType: String, architectures: [String]?, file: String) throws -> Architecture {
        if let reason = refused[modelType] {
            throw FormatError.key(file, "model_type", "'\(modelType)' is not supported: \(reason)")
        }
        guard let family = families[modelType] else {
            throw FormatError.key(file, "model_type", "expected one of \(supportedList); found '\(modelType)'")
        }
        for cls in architectures ?? [] where !cls.hasSuffix("ForCausalLM") && !cls.hasSuffix("Model") {
            throw FormatError.key(file, "architectures", "'\(cls)' is not supported: dtrain builds the causal LM only (no vision towers or task heads)")
        }
        return family
    }

    /// The family of a GGUF `general.architecture`, or a typed error naming the key.
    public static func gguf(_ arch: String, file: String) throws -> Architecture {
        if let family = ggufFamilies[arch] { return family }
        if let reason = refused[arch] {
            throw FormatError.key(file, "general.architecture", "'\(arch)' is not supported: \(reason)")
        }
        guard let family = families[arch] else {
            throw FormatError.key(file, "general.architecture", "expected one of \(supportedList); found '\(arch)'")
        }
        return family
    }

    /// Heads whose rows llama.cpp permutes in a GGUF of this family for projection p (q: H, k: K), else nil.
    public func ggufPermutedHeads(_ p: TensorNames.Projection, heads: Int, kvHeads: Int) -> Int? {
        guard ggufPermutesQK else { return nil }
        switch p { case .q: return heads; case .k: return kvHeads; default: return nil }
    }
}

extension Architecture {
    /// Sets the window and its layers from config.json the way transformers reads this family's keys.
    mutating func resolveSlidingWindow(_ json: JSONFields, layers: Int) throws {
        let size = 1...(1 << 24)
        switch windowKeys {
        case .none:
            slidingWindow = nil
        case .everyLayer:
            slidingWindow = json.has("sliding_window") ? try json.integer("sliding_window", in: size) : nil
            windowedLayers = .all
        case .optIn:
            guard try json.bool("use_sliding_window", default: false) else { slidingWindow = nil; return }
            slidingWindow = try json.integer("sliding_window", default: 4096, in: size)
            if let types = try json.strings("layer_types") {
                for (i, t) in types.enumerated() where t != "sliding_attention" && t != "full_attention" {
                    throw FormatError.key(json.file, "layer_types[\(i)]", "expected 'sliding_attention' or 'full_attention', found '\(t)'")
                }
                windowedLayers = .listed(types.map { $0 == "sliding_attention" })
            } else {
                let first = try json.integer("max_window_layers", default: 28, in: 0...(1 << 24))
                windowedLayers = .listed((0..<layers).map { $0 >= first })
            }
        case .layerTypes(let defaultPattern):
            slidingWindow = try json.integer("sliding_window", default: slidingWindow ?? 4096, in: size)
            if let types = try json.strings("layer_types") {
                for (i, t) in types.enumerated() where t != "sliding_attention" && t != "full_attention" {
                    throw FormatError.key(json.file, "layer_types[\(i)]", "expected 'sliding_attention' or 'full_attention', found '\(t)'")
                }
                windowedLayers = .listed(types.map { $0 == "sliding_attention" })
            } else {
                let pattern = try json.integer("sliding_window_pattern", default: defaultPattern, in: size)
                windowedLayers = .listed((0..<layers).map { ($0 + 1) % pattern != 0 })
            }
        }
    }

    /// The window pattern of a GGUF of this family (llama.cpp fixes Gemma 3's: every 6th layer global).
    mutating func resolveGGUFWindow(layers: Int) {
        if case .layerTypes(let pattern) = windowKeys { windowedLayers = .listed((0..<layers).map { ($0 + 1) % pattern != 0 }) }
    }

    /// Gemma's keys: the activation, the score scale, attention and final-logit soft-capping (a positive cap,
    /// or null for none), and the RoPE bases of full and sliding layers (Gemma 3:
    /// `rope_parameters.{full,sliding}_attention`, or `rope_theta`/`rope_local_base_freq`). Returns the full layers' base.
    mutating func resolveGemma(_ json: JSONFields, theta fallback: Double) throws -> Double {
        let act = try json.has("hidden_activation") ? json.string("hidden_activation") : json.string("hidden_act", default: activation.rawValue)
        guard let a = Activation(rawValue: act), a == activation else {
            throw FormatError.key(json.file, "hidden_activation", "expected '\(activation.rawValue)', found '\(act)'")
        }
        queryScale = Float(try json.number("query_pre_attn_scalar", default: 256, expected: "a positive number", where: { $0 > 0 }))
        func cap(_ key: String, _ fallback: Float?) throws -> Float? {
            // absent: the family's default (transformers' config class); null: no capping
            guard json.object[key] != nil else { return fallback }
            guard json.has(key) else { return nil }
            return Float(try json.number(key, expected: "a positive cap or null", where: { $0 > 0 && $0 < 1e30 }))
        }
        attentionSoftcap = try cap("attn_logit_softcapping", attentionSoftcap)
        finalLogitSoftcap = try cap("final_logit_softcapping", finalLogitSoftcap)
        var theta = try json.number("rope_theta", default: fallback, expected: "a RoPE base above 1", where: { $0 > 1 })
        guard localRopeTheta != nil else { return theta }   // one RoPE base for all layers (Gemma 2)
        localRopeTheta = Float(try json.number("rope_local_base_freq", default: Double(localRopeTheta ?? 10000),
                                               expected: "a RoPE base above 1", where: { $0 > 1 }))
        if let params = try json.object("rope_parameters") {
            for (layerType, local) in [("full_attention", false), ("sliding_attention", true)] {
                guard let p = try params.object(layerType) else { continue }
                let kind = try p.string("rope_type", default: "default")
                guard kind == "default" else {
                    throw FormatError.key(json.file, "rope_parameters.\(layerType).rope_type", "expected 'default' (RoPE scaling is not built for this family), found '\(kind)'")
                }
                guard p.has("rope_theta") else { continue }
                let t = try p.number("rope_theta", expected: "a RoPE base above 1", where: { $0 > 1 })
                if local { localRopeTheta = Float(t) } else { theta = t }
            }
        }
        return theta
    }
}
