// Hyper-parameters of a Llama-family model, read from GGUF metadata or HF config.json; what the family does
// differently from Llama is its resolved `Architecture`.
import DTFormats
import Foundation

public struct LlamaConfig: Equatable, Sendable {
    /// The family's description, resolved against this checkpoint (bias, sliding window).
    public var architecture: Architecture
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
    /// LongRoPE (HF rope_type "longrope"; GGUF rope_factors_short / _long): the 128k-context Phi-3 and Phi-3.5.
    public var longRope: LongRoPE? = nil

    /// Per-dimension divisors (D/2) of the inverse frequencies: `short` for a pass whose positions all lie within
    /// `originalMaxPositions`, `long` for one that reaches beyond (transformers decides per forward pass, by the
    /// largest position); cos and sin are scaled by `attentionFactor` either way.
    public struct LongRoPE: Equatable, Sendable {
        public var short: [Float], long: [Float]
        public var originalMaxPositions: Int
        public var attentionFactor: Float
        /// Whether a pass whose largest position is `maxPosition` uses the long factors.
        public func usesLong(maxPosition: Int) -> Bool { maxPosition + 1 > originalMaxPositions }
    }

    public struct Llama3RopeScaling: Equatable, Sendable {
        public var factor: Float, lowFreqFactor: Float, highFreqFactor: Float, originalMaxPositions: Int
    }

    /// Inverse RoPE frequencies (D/2), with Llama-3 scaling applied as HF's `_compute_llama3_parameters` does.
    /// `theta` replaces the model's base (the windowed layers' base, Architecture.localRopeTheta).
    public func ropeInverseFrequencies(freqFactors: [Float]? = nil, theta: Float? = nil) -> [Float] {
        let half = headDim / 2
        var inv = (0..<half).map { i in Float(1.0 / pow(Double(theta ?? ropeTheta), Double(2 * i) / Double(headDim))) }
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
            + (architecture.qkvBias ? heads * headDim + 2 * kvHeads * headDim : 0)
            + (architecture.qkNorm ? 2 * headDim : 0)
        let mlp = 3 * hiddenSize * intermediateSize
        let perLayer = attention + mlp + (architecture.sandwichNorms ? 4 : 2) * hiddenSize
        return vocabSize * hiddenSize * (tiedEmbeddings ? 1 : 2) + layers * perLayer + hiddenSize
    }

    /// Checks every hyper-parameter's range and their consistency; `names` maps a field to its key in the
    /// file (HF config.json or GGUF metadata), so the message names the key the user can fix.
    func validate(file: String, names: [String: String]) throws {
        func key(_ field: String) -> String { names[field] ?? field }
        if let w = architecture.slidingWindow, w < 1 || w > 1 << 24 {
            throw FormatError.key(file, key("slidingWindow"), "expected a positive window (at most \(1 << 24)), found \(w)")
        }
        if case .listed(let flags) = architecture.windowedLayers, flags.count != layers {
            throw FormatError.key(file, key("windowedLayers"), "expected one entry per layer (\(layers)), found \(flags.count)")
        }
        let checks: [(String, Int)] = [("vocabSize", vocabSize), ("hiddenSize", hiddenSize), ("intermediateSize", intermediateSize),
                                       ("layers", layers), ("heads", heads), ("kvHeads", kvHeads), ("headDim", headDim),
                                       ("maxPositions", maxPositions)]
        for (name, value) in checks where value <= 0 || value > 1 << 24 {
            throw FormatError.key(file, key(name), "expected a positive size (at most \(1 << 24)), found \(value)")
        }
        guard heads % kvHeads == 0 else {
            throw FormatError.key(file, key("kvHeads"), "the head count \(heads) is not a multiple of the kv head count \(kvHeads)")
        }
        guard headDim % 2 == 0 else { throw FormatError.key(file, key("headDim"), "expected an even head dim, found \(headDim)") }
        guard rmsNormEps.isFinite, rmsNormEps > 0, rmsNormEps < 1 else {
            throw FormatError.key(file, key("rmsNormEps"), "expected a finite epsilon in (0, 1), found \(rmsNormEps)")
        }
        guard ropeTheta.isFinite, ropeTheta > 1 else {
            throw FormatError.key(file, key("ropeTheta"), "expected a finite RoPE base above 1, found \(ropeTheta)")
        }
        if let s = ropeScaling {
            for (name, v) in [("factor", s.factor), ("low_freq_factor", s.lowFreqFactor), ("high_freq_factor", s.highFreqFactor)]
            where !(v.isFinite && v > 0) {
                throw FormatError.key(file, key("ropeScaling") + "." + name, "expected a finite positive number, found \(v)")
            }
            guard s.highFreqFactor > s.lowFreqFactor else {
                throw FormatError.key(file, key("ropeScaling") + ".high_freq_factor",
                                      "expected more than low_freq_factor \(s.lowFreqFactor), found \(s.highFreqFactor)")
            }
            guard s.originalMaxPositions > 0 else {
                throw FormatError.key(file, key("ropeScaling") + ".original_max_position_embeddings", "expected a positive integer, found \(s.originalMaxPositions)")
            }
        }
    }
}

extension LlamaConfig {
    /// From GGUF metadata (`<arch>.block_count` …).
    public init(gguf: GGUFFile) throws {
        let file = gguf.path
        guard let arch = gguf.metadata["general.architecture"]?.string else {
            throw FormatError.key(file, "general.architecture", "missing")
        }
        var family = try Architecture.gguf(arch, file: file)
        func int(_ key: String, _ fallback: Int? = nil) throws -> Int {
            if let v = gguf.metadata["\(arch).\(key)"]?.int { return v }
            if let fallback { return fallback }
            throw FormatError.key(file, "\(arch).\(key)", "missing or not an integer")
        }
        func float(_ key: String, _ fallback: Double) throws -> Float {
            guard let value = gguf.metadata["\(arch).\(key)"] else { return Float(fallback) }
            guard let d = value.double, d.isFinite else { throw FormatError.key(file, "\(arch).\(key)", "expected a finite number, found \(value)") }
            return Float(d)
        }
        // The layer count sizes per-layer lists below: checked before anything is allocated by it (fuzzing found a
        // 2-billion-layer header that asked for gigabytes here).
        let layers = try int("block_count")
        guard (1...(1 << 24)).contains(layers) else {
            throw FormatError.key(file, "\(arch).block_count", "expected a positive size (at most \(1 << 24)), found \(layers)")
        }
        family.resolveGGUFWindow(layers: layers)
        if let p = gguf.metadata["\(arch).attention.sliding_window_pattern"] {   // a period, or true = windowed per layer
            let key = "\(arch).attention.sliding_window_pattern"
            if let n = p.int, n >= 1 {
                family.windowedLayers = .listed((0..<layers).map { ($0 + 1) % n != 0 })
            } else if let flags = p.array?.compactMap(\.bool), flags.count == layers, p.array?.count == layers {
                family.windowedLayers = .listed(flags)
            } else {
                throw FormatError.key(file, key, "expected a positive period or \(layers) booleans, found \(p)")
            }
        }
        let hidden = try int("embedding_length")
        let heads = try int("attention.head_count")
        let vocab = try gguf.metadata["\(arch).vocab_size"]?.int
            ?? gguf.metadata["tokenizer.ggml.tokens"]?.array?.count
            ?? gguf.tensor("token_embd.weight").map { $0.dims[1] }
            ?? { throw FormatError.key(file, "\(arch).vocab_size", "missing (and no tokenizer or token_embd.weight)") }()
        family.qkvBias = gguf.tensor("blk.0.attn_q.bias") != nil
        var longRope: LongRoPE?
        if gguf.tensor("rope_factors_long.weight") != nil || gguf.tensor("rope_factors_short.weight") != nil {
            // LongRoPE as convert_hf_to_gguf.py's Phi3MiniModel writes it: both factor tensors, the original context
            // and the attention factor.
            let half = try int("attention.key_length", hidden / max(heads, 1)) / 2
            func factors(_ name: String) throws -> [Float] {
                guard let info = gguf.tensor(name), info.type == .f32, info.elementCount == half else {
                    throw FormatError.key(file, name, "expected F32 [\(half)] (LongRoPE needs rope_factors_long and rope_factors_short)")
                }
                var out = [Float](repeating: 0, count: half)
                out.withUnsafeMutableBufferPointer { Dequantize.run(.f32, gguf.data(of: info).baseAddress!, $0.baseAddress!, count: half) }
                try FormatError.requireFinite(out, file: file, key: name)
                guard out.allSatisfy({ $0 > 0 }) else { throw FormatError.key(file, name, "expected positive factors") }
                return out
            }
            let original = try int("rope.scaling.original_context_length")
            guard original > 0 else { throw FormatError.key(file, "\(arch).rope.scaling.original_context_length", "expected a positive length, found \(original)") }
            let attention = try float("rope.scaling.attn_factor", 1)
            guard attention > 0 else { throw FormatError.key(file, "\(arch).rope.scaling.attn_factor", "expected a positive factor, found \(attention)") }
            longRope = LongRoPE(short: try factors("rope_factors_short.weight"), long: try factors("rope_factors_long.weight"),
                                originalMaxPositions: original, attentionFactor: attention)
        }
        if let w = gguf.metadata["\(arch).attention.sliding_window"] {
            guard let n = w.int else { throw FormatError.key(file, "\(arch).attention.sliding_window", "expected an integer, found \(w)") }
            family.slidingWindow = n
        }
        for (key, path) in [("attn_logit_softcapping", \Architecture.attentionSoftcap), ("final_logit_softcapping", \.finalLogitSoftcap)] {
            guard let value = gguf.metadata["\(arch).\(key)"] else { continue }   // absent: the family's default, as in llama.cpp
            guard let d = value.double, d.isFinite, d > 0 else {
                throw FormatError.key(file, "\(arch).\(key)", "expected a positive cap, found \(value)")
            }
            family[keyPath: path] = Float(d)
        }
        // llama.cpp scores Gemma 2 27B (46 layers) by 1/√(hidden/heads), its query_pre_attn_scalar, else 1/√head_dim.
        if arch == "gemma2", try int("block_count") == 46 { family.queryScale = Float(hidden / max(heads, 1)) }
        self.init(architecture: family, vocabSize: vocab, hiddenSize: hidden,
                  intermediateSize: try int("feed_forward_length"), layers: try int("block_count"),
                  heads: heads, kvHeads: try int("attention.head_count_kv", heads),
                  headDim: try int("attention.key_length", hidden / max(heads, 1)),
                  rmsNormEps: try float("attention.layer_norm_rms_epsilon", 1e-5),
                  ropeTheta: try float("rope.freq_base", 10000), ropeScaling: nil,
                  maxPositions: try int("context_length", 2048),
                  tiedEmbeddings: gguf.tensor("output.weight") == nil, longRope: longRope)
        try validate(file: file, names: [
            "architecture": "general.architecture", "vocabSize": "\(arch).vocab_size", "hiddenSize": "\(arch).embedding_length",
            "intermediateSize": "\(arch).feed_forward_length", "layers": "\(arch).block_count", "heads": "\(arch).attention.head_count",
            "kvHeads": "\(arch).attention.head_count_kv", "headDim": "\(arch).attention.key_length",
            "rmsNormEps": "\(arch).attention.layer_norm_rms_epsilon", "ropeTheta": "\(arch).rope.freq_base",
            "maxPositions": "\(arch).context_length", "slidingWindow": "\(arch).attention.sliding_window"])
    }

    /// From a Hugging Face config.json. Integers must be JSON integers and numbers finite (JSONFields).
    public init(hfConfig path: String) throws {
        let json = try JSONFields.read(path, expected: "a Hugging Face config.json")
        let size = 1...(1 << 24)
        let modelType = try json.string("model_type")
        let hidden = try json.integer("hidden_size", in: size), heads = try json.integer("num_attention_heads", in: size)
        let layers = try json.integer("num_hidden_layers", in: size)
        var family = try Architecture.hf(modelType: modelType, architectures: try json.strings("architectures"), file: path)
        let perLayerTypeRope = family.localRopeTheta != nil   // rope_parameters per layer type (Gemma 3)
        var scaling: Llama3RopeScaling?
        var longRope: LongRoPE?
        // transformers ≥ 5 writes the scaling (and rope_theta) under rope_parameters; older files use rope_scaling.
        let scalingKey = json.has("rope_scaling") ? "rope_scaling" : "rope_parameters"
        if !perLayerTypeRope, let rs = try json.object(scalingKey) {
            let kind = try rs.has("rope_type") ? rs.string("rope_type") : rs.string("type", default: "")
            guard kind == "llama3" || kind == "default" || kind == "longrope" || kind == "su" else {
                throw FormatError.key(path, "\(scalingKey).rope_type", "expected 'llama3', 'longrope' or 'default', found '\(kind)'")
            }
            if kind == "longrope" || kind == "su" {   // "su": the name in the first Phi-3 128k configs
                let half = try json.integer("head_dim", default: hidden / heads, in: size) / 2
                func factors(_ k: String) throws -> [Float] { try rs.numbers(k, count: half, expected: "a positive factor", where: { $0 > 0 }).map(Float.init) }
                let original = try rs.has("original_max_position_embeddings") ? rs.integer("original_max_position_embeddings", in: size)
                    : json.integer("original_max_position_embeddings", in: size)
                let maxPositions = try json.integer("max_position_embeddings", default: 2048, in: size)
                // transformers' _compute_longrope_parameters: factor = max / original unless given; attention factor
                // √(1 + ln factor / ln original) unless given (1 for factor ≤ 1).
                let factor = try rs.number("factor", default: Double(maxPositions) / Double(original), expected: "a positive number", where: { $0 > 0 })
                let attention = try rs.number("attention_factor", default: factor <= 1 ? 1 : (1 + log(factor) / log(Double(original))).squareRoot(),
                                              expected: "a positive number", where: { $0 > 0 })
                longRope = LongRoPE(short: try factors("short_factor"), long: try factors("long_factor"),
                                    originalMaxPositions: original, attentionFactor: Float(attention))
            }
            if kind == "llama3" {
                func positive(_ k: String) throws -> Float { Float(try rs.number(k, expected: "a positive number", where: { $0 > 0 })) }
                scaling = Llama3RopeScaling(factor: try positive("factor"), lowFreqFactor: try positive("low_freq_factor"),
                                            highFreqFactor: try positive("high_freq_factor"),
                                            originalMaxPositions: try rs.integer("original_max_position_embeddings", in: size))
            }
        }
        var theta = try json.number("rope_theta", default: 10000, expected: "a RoPE base above 1", where: { $0 > 1 })
        if !perLayerTypeRope, let params = try json.object("rope_parameters"), params.has("rope_theta") {
            theta = try params.number("rope_theta", expected: "a RoPE base above 1", where: { $0 > 1 })
        }
        if family.activation == .geGLUTanh { theta = try family.resolveGemma(json, theta: perLayerTypeRope ? 1_000_000 : theta) }
        family.qkvBias = try json.bool("attention_bias", default: family.qkvBias)
        // transformers ≥ 5 keeps partial_rotary_factor under rope_parameters; older files at the top level.
        for (fields, key) in [(json, "partial_rotary_factor"), (try json.object("rope_parameters"), "rope_parameters.partial_rotary_factor")] {
            guard let fields else { continue }
            let rotary = try fields.number("partial_rotary_factor", default: 1, expected: "a fraction in (0, 1]", where: { $0 > 0 && $0 <= 1 })
            guard rotary == 1 else { throw FormatError.key(path, key, "RoPE on part of each head (\(rotary)) is not built; expected 1") }
        }
        try family.resolveSlidingWindow(json, layers: layers)
        let eps = try json.number("rms_norm_eps", default: 1e-6, expected: "an epsilon in (0, 1)", where: { $0 > 0 && $0 < 1 })
        self.init(architecture: family, vocabSize: try json.integer("vocab_size", in: size), hiddenSize: hidden,
                  intermediateSize: try json.integer("intermediate_size", in: size), layers: layers,
                  heads: heads, kvHeads: try json.integer("num_key_value_heads", default: heads, in: size),
                  headDim: try json.integer("head_dim", default: hidden / heads, in: size),
                  rmsNormEps: Float(eps), ropeTheta: Float(theta), ropeScaling: scaling,
                  maxPositions: try json.integer("max_position_embeddings", default: 2048, in: size),
                  tiedEmbeddings: try json.bool("tie_word_embeddings", default: family.sandwichNorms), longRope: longRope)
        try validate(file: path, names: [
            "architecture": "model_type", "vocabSize": "vocab_size", "hiddenSize": "hidden_size", "intermediateSize": "intermediate_size",
            "layers": "num_hidden_layers", "heads": "num_attention_heads", "kvHeads": "num_key_value_heads", "headDim": "head_dim",
            "rmsNormEps": "rms_norm_eps", "ropeTheta": "rope_theta", "maxPositions": "max_position_embeddings", "ropeScaling": scalingKey,
            "slidingWindow": "sliding_window", "windowedLayers": "layer_types"])
    }
}
