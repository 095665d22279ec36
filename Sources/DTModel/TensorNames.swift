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

    public static let embedding = "model.embed_tokens.weight"
    public static let finalNorm = "model.norm.weight"
    public static let lmHead = "lm_head.weight"
    public static func attentionNorm(_ layer: Int) -> String { "model.layers.\(layer).input_layernorm.weight" }
    public static func mlpNorm(_ layer: Int) -> String { "model.layers.\(layer).post_attention_layernorm.weight" }
    public static func projection(_ layer: Int, _ p: Projection, bias: Bool = false) -> String {
        "model.layers.\(layer).\(p.modulePath).\(bias ? "bias" : "weight")"
    }

    /// llama.cpp name of an HF tensor name, or nil if it has none.
    public static func gguf(_ hf: String) -> String? {
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
        if rest == "post_attention_layernorm.weight" { return "blk.\(layer).ffn_norm.weight" }
        for p in Projection.allCases {
            if rest == "\(p.modulePath).weight" { return "blk.\(layer).\(p.ggufName).weight" }
            if rest == "\(p.modulePath).bias" { return "blk.\(layer).\(p.ggufName).bias" }
        }
        return nil
    }
}
