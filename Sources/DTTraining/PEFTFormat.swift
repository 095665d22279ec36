// PEFT's adapter directory (huggingface/peft): adapter_config.json + adapter_model.safetensors with
// {"format": "pt"} metadata. LoRA tensors are fp32 `base_model.model.model.layers.N.<module>.lora_A.weight`
// (r, in) and `…lora_B.weight` (out, r), HF row order (dtrain un-permutes GGUF Q/K at load, so no fix-up).
// DoRA is a LORA directory with "use_dora": true and one `…<module>.lora_magnitude_vector` (out) per module.
import DTFormats
import DTModel
import Foundation

public enum PEFTFormat {
    /// adapter_config.json; `fused`: the model stores fused projections (Phi-3), so q/k/v and gate/up are the
    /// modules `qkv_proj` and `gate_up_proj`, as PEFT names them there.
    public static func loraConfigJSON(_ o: LoRAOptions, baseModel: String, fused: Bool = false) throws -> Data {
        var modules: [String] = []
        for p in o.targets {
            let name = fused ? TensorNames.FusedModule.of(p)?.rawValue ?? p.rawValue : p.rawValue
            if !modules.contains(name) { modules.append(name) }
        }
        let config: [String: Any] = [
            "peft_type": "LORA", "task_type": "CAUSAL_LM", "base_model_name_or_path": baseModel,
            "r": o.rank, "lora_alpha": Double(o.alpha), "lora_dropout": Double(o.dropout),
            "target_modules": modules, "bias": "none", "use_rslora": o.rsLoRA, "use_dora": o.useDoRA,
            "fan_in_fan_out": false, "modules_to_save": NSNull(), "inference_mode": true, "init_lora_weights": true,
            "layers_to_transform": NSNull(), "layers_pattern": NSNull(), "rank_pattern": [String: Any](),
            "alpha_pattern": [String: Any](), "revision": NSNull(),
        ]
        return try JSONSerialization.data(withJSONObject: config, options: [.prettyPrinted, .sortedKeys])
    }

    /// The adapter's tensors as safetensors bytes.
    public static func tensors(_ arena: ParameterArena) -> Data {
        SafetensorsWriter.encode(arena.entries.map { .init(name: $0.name, shape: $0.shape, values: arena.array($0.name)) },
                                 metadata: ["format": "pt"])
    }

    public static func loraFiles(_ adapter: LoRAAdapter, baseModel: String) throws -> [(String, Data)] {
        [("adapter_config.json", try loraConfigJSON(adapter.options, baseModel: baseModel, fused: adapter.fused)),
         ("adapter_model.safetensors", tensors(adapter.arena))]
    }

    /// PEFT files of model-independent LoRA weights (e.g. read from a GGUF adapter).
    public static func loraFiles(_ weights: LoRAWeights, config: LlamaConfig, baseModel: String) throws -> [(String, Data)] {
        var entries: [SafetensorsWriter.Entry] = []
        let fused = config.architecture.fusedProjections, r = weights.options.rank
        for module in weights.modules(config: config) {
            let (l, p) = (module.layer, module.parts[0])
            entries.append(.init(name: LoRAAdapter.tensorName(l, p, "A", fused: fused), shape: [r, module.a.count / r], values: module.a))
            entries.append(.init(name: LoRAAdapter.tensorName(l, p, "B", fused: fused), shape: [module.b.count / r, r], values: module.b))
            if let m = module.magnitude {
                entries.append(.init(name: LoRAAdapter.magnitudeName(l, p, fused: fused), shape: [m.count], values: m))
            }
        }
        return [("adapter_config.json", try loraConfigJSON(weights.options, baseModel: baseModel, fused: fused)),
                ("adapter_model.safetensors", SafetensorsWriter.encode(entries, metadata: ["format": "pt"]))]
    }

    /// adapter_config.json of a PEFT directory as a JSON object.
    public static func readConfig(_ dir: String) throws -> [String: Any] {
        let path = (dir as NSString).appendingPathComponent("adapter_config.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(file: path, location: "", "missing (expected a PEFT adapter directory)")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(file: path, location: "", "expected a JSON object")
        }
        return json
    }

    /// The directory's peft_type ("LORA", "PROMPT_TUNING", …).
    public static func peftType(_ dir: String) throws -> String {
        let json = try readConfig(dir)
        guard let type = json["peft_type"] as? String else {
            throw FormatError.key((dir as NSString).appendingPathComponent("adapter_config.json"), "peft_type", "missing")
        }
        guard ["LORA", "PROMPT_TUNING"].contains(type) else {
            throw FormatError.key((dir as NSString).appendingPathComponent("adapter_config.json"), "peft_type",
                                  "expected LORA or PROMPT_TUNING, found \"\(type)\"")
        }
        return type
    }

    /// Reads adapter_config.json of a PEFT LoRA directory (r a JSON integer, lora_alpha a positive number: a
    /// string or a bool is refused, not replaced by the default).
    public static func readLoRAOptions(_ dir: String) throws -> LoRAOptions {
        let path = (dir as NSString).appendingPathComponent("adapter_config.json")
        let json = JSONFields(file: path, object: try readConfig(dir))
        guard (json.object["peft_type"] as? String) == "LORA" else {
            throw FormatError.key(path, "peft_type", "expected \"LORA\", found \(json.object["peft_type"] ?? "nothing")")
        }
        var o = LoRAOptions()
        o.rank = try json.integer("r", in: 1...65536)
        o.alpha = Float(try json.number("lora_alpha", default: Double(o.rank), expected: "a positive number", where: { $0 > 0 }))
        o.rsLoRA = try json.bool("use_rslora", default: false)
        o.useDoRA = try json.bool("use_dora", default: false)
        for key in ["rank_pattern", "alpha_pattern"] {
            if let d = json.object[key] as? [String: Any], !d.isEmpty { throw FormatError.key(path, key, "per-module ranks/alphas are not supported") }
        }
        let names: [String]
        if json.object["target_modules"] is String { throw FormatError.key(path, "target_modules", "expected a list of module names (a pattern string is not supported)") }
        names = try json.strings("target_modules") ?? ["q_proj", "v_proj"]
        o.targets = try names.flatMap { n in
            if let m = TensorNames.FusedModule(rawValue: n) { return m.parts }   // Phi-3's fused modules
            guard let p = TensorNames.Projection(rawValue: n) else {
                throw FormatError.key(path, "target_modules", "unsupported module '\(n)' (expected q_proj … down_proj, or qkv_proj / gate_up_proj)")
            }
            return [p]
        }.reduce(into: []) { kept, p in if !kept.contains(p) { kept.append(p) } }
        guard !o.targets.isEmpty else { throw FormatError.key(path, "target_modules", "expected at least one module") }
        return o
    }

    /// Loads a PEFT LoRA directory onto `model`: every tensor must be a known LoRA tensor of the right shape.
    public static func loadLoRA(_ dir: String, model: LlamaModel) throws -> LoRAAdapter {
        try LoRAWeights.readPEFT(dir, config: model.config).adapter(model: model)
    }
}
