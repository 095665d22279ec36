// The one table of tensor names: dtrain uses Hugging Face names internally (they are also PEFT's);
// GGUF files use llama.cpp's names.
public enum TensorNames {
    public enum Projection: String, CaseIterable, Sendable {
        case q = "q_proj", k = "k_proj", v = "v_proj", o = "o_proj", gate = "gate_proj", up = "up_proj", down = "down_proj"

        /// HF module path inside a layer: "self_attn.q_proj" or "mlp.gate_proj".
        public var modulePath: String {
            switch self {
            case .q, .k, .v, .o: "self_attn.\(rawValue)"
            case .gate, .up, .down: "mlp.\(rawValue)"
            }
        }

        public var ggufName: String {
            switch self {
            case .q: "attn_q"; case .k: "attn_k"; case .v: "attn_v"; case .o: "attn_output"
            case .gate: "ffn_gate"; case .up: "ffn_up"; case .down: "ffn_down"
            }
        }
    }

    /// A tensor that holds several projections' rows one after another (Architecture.fusedProjections): Phi-3's
    /// `qkv_proj` (q, k, v) and `gate_up_proj` (gate, up; llama.cpp's `ffn_up` of 2·I rows).
    public enum FusedModule: String, CaseIterable, Sendable {
        case qkv = "qkv_proj", gateUp = "gate_up_proj"

        public var parts: [Projection] { self == .qkv ? [.q, .k, .v] : [.gate, .up] }
        public var modulePath: String { self == .qkv ? "self_attn.qkv_proj" : "mlp.gate_up_proj" }
        public var ggufName: String { self == .qkv ? "attn_qkv" : "ffn_up" }
        public static func of(_ p: Projection) -> FusedModule? { allCases.first { $0.parts.contains(p) } }
    }

    public static func fused(_ layer: Int, _ m: FusedModule) -> String { "model.layers.\(layer).\(m.modulePath).weight" }

    /// HF weight name of an adapter module (LlamaConfig.adapterModules): a projection's, or its fused tensor's.
    public static func moduleWeight(_ layer: Int, _ parts: [Projection]) -> String {
        parts.count > 1 ? fused(layer, FusedModule.of(parts[0])!) : projection(layer, parts[0])
    }

    /// (layer, projection) of an HF projection weight name `model.layers.N.<module path>.weight`.
    public static func parseProjection(_ name: String) -> (layer: Int, projection: Projection)? {
        let parts = name.split(separator: ".")
        guard parts.count == 6, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]), parts[5] == "weight",
              let p = Projection.allCases.first(where: { $0.modulePath == "\(parts[3]).\(parts[4])" }) else { return nil }
        return (layer, p)
    }

    public static let embedding = "model.embed_tokens.weight"
    public static let finalNorm = "model.norm.weight"
    public static let lmHead = "lm_head.weight"
    public static func attentionNorm(_ layer: Int) -> String { "model.layers.\(layer).input_layernorm.weight" }
    /// The MLP's input norm: Llama's `post_attention_layernorm`; with sandwich norms (Gemma) `pre_feedforward_layernorm`.
    public static func mlpNorm(_ layer: Int, sandwich: Bool = false) -> String {
        "model.layers.\(layer).\(sandwich ? "pre_feedforward_layernorm" : "post_attention_layernorm").weight"
    }
    /// Sandwich norms (Gemma) of the attention and MLP outputs.
    public static func postAttentionNorm(_ layer: Int) -> String { "model.layers.\(layer).post_attention_layernorm.weight" }
    public static func postMLPNorm(_ layer: Int) -> String { "model.layers.\(layer).post_feedforward_layernorm.weight" }
    /// Per-head RMSNorm weights (D) of q and k (Architecture.qkNorm).
    public static func queryNorm(_ layer: Int) -> String { "model.layers.\(layer).self_attn.q_norm.weight" }
    public static func keyNorm(_ layer: Int) -> String { "model.layers.\(layer).self_attn.k_norm.weight" }
    public static func projection(_ layer: Int, _ p: Projection, bias: Bool = false) -> String {
        "model.layers.\(layer).\(p.modulePath).\(bias ? "bias" : "weight")"
    }

    /// llama.cpp name of an HF tensor name, or nil if it has none. With sandwich norms `post_attention_layernorm`
    /// is the attention output's norm (`post_attention_norm`), not the MLP's input norm (`ffn_norm`).
    public static func gguf(_ hf: String, sandwich: Bool = false) -> String? {
        switch hf {
        case embedding: return "token_embd.weight"
        case finalNorm: return "output_norm.weight"
        case lmHead: return "output.weight"
        default: break
        }
        let parts = hf.split(separator: ".")
        guard parts.count >= 5, parts[0] == "model", parts[1] == "layers", let layer = Int(parts[2]) else { return nil }
        let rest = parts[3...].joined(separator: ".")
        if rest == "input_layernorm.weight" { return "blk.\(layer).attn_norm.weight" }
        if rest == "post_attention_layernorm.weight" { return "blk.\(layer).\(sandwich ? "post_attention_norm" : "ffn_norm").weight" }
        if rest == "pre_feedforward_layernorm.weight" { return "blk.\(layer).ffn_norm.weight" }
        if rest == "post_feedforward_layernorm.weight" { return "blk.\(layer).post_ffw_norm.weight" }
        if rest == "self_attn.q_norm.weight" { return "blk.\(layer).attn_q_norm.weight" }
        if rest == "self_attn.k_norm.weight" { return "blk.\(layer).attn_k_norm.weight" }
        for m in FusedModule.allCases where rest == "\(m.modulePath).weight" { return "blk.\(layer).\(m.ggufName).weight" }
        for p in Projection.allCases {
            if rest == "\(p.modulePath).weight" { return "blk.\(layer).\(p.ggufName).weight" }
            if rest == "\(p.modulePath).bias" { return "blk.\(layer).\(p.ggufName).bias" }
        }
        return nil
    }
}

/// llama.cpp's Q/K row order for llama-architecture GGUF files (convert_hf_to_gguf.py `permute`): within each
/// head of D rows, stored row 2i + j holds HF row j·D/2 + i, so RoPE can rotate adjacent pairs.
public enum LlamaCppRowOrder {
    /// The HF row held by stored row `r` of a matrix with `rows` rows in `heads` heads.
    @inline(__always) public static func hfRow(_ r: Int, rows: Int, heads: Int) -> Int {
        let d = rows / heads
        let h = r / d, within = r % d
        return h * d + (within % 2) * (d / 2) + within / 2
    }

    /// The stored row holding HF row `r` (the inverse of hfRow): HF h·D + j·D/2 + i is stored at h·D + 2i + j.
    @inline(__always) public static func storedRow(_ r: Int, rows: Int, heads: Int) -> Int {
        let d = rows / heads
        let h = r / d, within = r % d
        return h * d + 2 * (within % (d / 2)) + within / (d / 2)
    }

    /// `rows × cols` values reordered between HF and stored order: `toStored` gives stored[r] = hf[hfRow(r)].
    public static func reorder(_ values: [Float], rows: Int, cols: Int, heads: Int, toStored: Bool) -> [Float] {
        precondition(values.count == rows * cols && rows % heads == 0 && (rows / heads) % 2 == 0, "Q/K reorder \(rows)×\(cols) / \(heads)")
        var out = values
        for r in 0..<rows {
            let h = hfRow(r, rows: rows, heads: heads)
            let (dst, src) = toStored ? (r, h) : (h, r)
            for c in 0..<cols { out[dst * cols + c] = values[src * cols + c] }
        }
        return out
    }
}

extension LlamaConfig {
    /// (out, in) of a projection: q (H·D, C), k/v (K·D, C), o (C, H·D), gate/up (I, C), down (C, I).
    public func projectionShape(_ p: TensorNames.Projection) -> (out: Int, in: Int) {
        switch p {
        case .q: (heads * headDim, hiddenSize)
        case .k, .v: (kvHeads * headDim, hiddenSize)
        case .o: (hiddenSize, heads * headDim)
        case .gate, .up: (intermediateSize, hiddenSize)
        case .down: (hiddenSize, intermediateSize)
        }
    }

    /// The projections as adapter files name them: each on its own, or grouped by fused tensor (Phi-3:
    /// [q, k, v], [o], [gate, up], [down]), in projection order.
    public var adapterModules: [[TensorNames.Projection]] {
        TensorNames.Projection.allCases.compactMap { p in
            guard architecture.fusedProjections, let m = TensorNames.FusedModule.of(p) else { return [p] }
            return m.parts[0] == p ? m.parts : nil
        }
    }

    /// Where projection p's rows sit in its fused tensor (Architecture.fusedProjections): the module, the first
    /// row and the module's row count; nil for a projection stored on its own.
    public func fusedRows(_ p: TensorNames.Projection) -> (module: TensorNames.FusedModule, start: Int, total: Int)? {
        guard architecture.fusedProjections, let m = TensorNames.FusedModule.of(p) else { return nil }
        var start = 0
        for part in m.parts.prefix(while: { $0 != p }) { start += projectionShape(part).out }
        return (m, start, m.parts.reduce(0) { $0 + projectionShape($1).out })
    }

    /// The llama.cpp architecture name a GGUF of this model carries (convert_hf_to_gguf writes Mistral as llama).
    public var ggufArchitecture: String { architecture.ggufName }

    /// Heads whose rows llama.cpp permutes in a GGUF of this model (llama architecture: q and k), else nil.
    public func ggufPermutedHeads(_ p: TensorNames.Projection) -> Int? {
        architecture.ggufPermutedHeads(p, heads: heads, kvHeads: kvHeads)
    }
}
