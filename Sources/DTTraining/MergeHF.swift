// `merge --format hf`: the merged model as a Hugging Face directory transformers loads with
// AutoModelForCausalLM: config.json, safetensors shards (+ model.safetensors.index.json when there are
// several), tokenizer files and generation config — copied from an HF base, made from the metadata of a
// GGUF base. Tensors are streamed one at a time in HF row order (llama.cpp's Q/K permutation undone).
import DTFormats
import DTModel
import DTTokenizer
import Foundation

extension ModelMerge {
    /// Files copied from an HF base directory as they are (when present).
    static let hfSideFiles = ["tokenizer.json", "tokenizer_config.json", "special_tokens_map.json", "chat_template.jinja",
                              "chat_template.json", "generation_config.json", "vocab.json", "merges.txt", "tokenizer.model"]

    /// HF name of every tensor name a GGUF of `config` can hold.
    static func hfNames(ggufOf config: LlamaConfig) -> [String: String] {
        var hf = [TensorNames.embedding, TensorNames.finalNorm, TensorNames.lmHead]
        for l in 0..<config.layers {
            hf += [TensorNames.attentionNorm(l), TensorNames.mlpNorm(l)]
            if config.architecture.qkNorm { hf += [TensorNames.queryNorm(l), TensorNames.keyNorm(l)] }
            for parts in config.adapterModules {   // a fused tensor (Phi-3) under its own name
                hf += [TensorNames.moduleWeight(l, parts)] + (parts.count == 1 ? [TensorNames.projection(l, parts[0], bias: true)] : [])
            }
        }
        return Dictionary(uniqueKeysWithValues: hf.map { (TensorNames.gguf($0)!, $0) })
    }

    /// Every tensor of `base` in HF names and the base's order, as stored (GGUF tensors mapped to HF names;
    /// an HF directory's quantized tensors refused).
    public static func hfTensors(_ base: ModelSource) throws -> [(name: String, raw: RawTensor)] {
        var names: [String] = []
        if let g = base.gguf {
            let map = hfNames(ggufOf: base.config)
            for info in g.tensors {
                // LongRoPE's factors are config.json's rope_scaling in an HF directory (HFConfigExport), not tensors.
                if base.config.longRope != nil, ["rope_factors_long.weight", "rope_factors_short.weight"].contains(info.name) { continue }
                guard let hf = map[info.name] else {
                    throw FormatError.key(g.path, info.name, "no Hugging Face tensor corresponds to it (\(info.name == "rope_freqs.weight" ? "Llama-3.1 RoPE factors are not written to an HF config yet" : "unknown tensor"))")
                }
                names.append(hf)
            }
        } else {
            for t in base.safetensorsInventory {
                guard SafetensorsDType(rawValue: t.dtype)?.ggmlType != nil else {
                    throw FormatError.key(base.path, t.name, "dtype \(t.dtype) (a quantized checkpoint) cannot be rewritten; start from the unquantized model")
                }
                names.append(t.name)
            }
        }
        return try names.map { name in
            guard let raw = try base.tensor(name) else { throw FormatError.key(base.path, name, "missing tensor") }
            return (name, raw)
        }
    }

    /// fp32 values of a stored tensor in HF row order (llama.cpp's Q/K permutation undone).
    static func hfValues(_ name: String, _ raw: RawTensor) throws -> [Float] {
        let values = try dequantized(raw.type, raw.data, count: raw.shape.reduce(1, *), file: raw.file, name: name)
        guard let heads = raw.permutedHeads else { return values }
        return LlamaCppRowOrder.reorder(values, rows: raw.shape[0], cols: raw.shape.count == 2 ? raw.shape[1] : 1, heads: heads, toStored: false)
    }

    /// Merges into an HF directory at `dir`; `maxShardBytes` bounds each safetensors file.
    public static func toHF(base: ModelSource, weights: LoRAWeights, outType: MergeOutType, dir: String, overwrite: Bool,
                            maxShardBytes: Int) throws -> MergeReport {
        let config = base.config
        let dtypeOf: (GGMLType) -> SafetensorsDType
        switch outType {
        case .f32: dtypeOf = { _ in .f32 }
        case .f16: dtypeOf = { _ in .f16 }
        case .bf16: dtypeOf = { _ in .bf16 }
        case .same: dtypeOf = { t in t == .f16 ? .f16 : t == .bf16 ? .bf16 : .f32 }
        default: throw CommandError("--outtype \(outType.rawValue) is a GGUF block type; an HF directory takes f32, f16, bf16 or same")
        }
        let tensors = try hfTensors(base)
        let plan = tensors.map { HFDirectoryWriter.TensorPlan(name: $0.name, dtype: dtypeOf($0.raw.type), shape: $0.raw.shape) }
        let byName = targets(weights, config: config)
        var report = MergeReport()
        if let g = base.gguf, g.metadata["tokenizer.ggml.model"] == nil {
            report.notes.append("\(g.path) has no tokenizer: the directory has no tokenizer files")
        }
        let torchDtype = HFDirectoryWriter.torchName(plan.first?.dtype ?? .f32)
        try HFDirectoryWriter.write(dir, overwrite: overwrite, tensors: plan, maxShardBytes: maxShardBytes,
                                    sideFiles: try sideFiles(base: base, torchDtype: torchDtype)) { i in
            let (name, raw) = tensors[i]
            var values = try hfValues(name, raw)
            if let (l, parts) = byName[name] {
                try foldModule(&values, layer: l, parts: parts, weights: weights, config: config, permuted: false, file: raw.file, name: name)
                report.merged += 1
            } else if plan[i].dtype.ggmlType == raw.type {
                report.copied += 1
            } else {
                report.converted += 1
            }
            return encoded(values, as: plan[i].dtype.ggmlType!)
        }
        return report
    }

    /// config.json (dtype updated) and the tokenizer / generation files of the base, made from GGUF metadata
    /// when the base is a GGUF file.
    static func sideFiles(base: ModelSource, torchDtype: String, extraConfig: [String: Any] = [:]) throws -> [(String, Data)] {
        if let g = base.gguf {
            let config = ("config.json", try HFConfigExport.configJSON(base.config, gguf: g, torchDtype: torchDtype, extra: extraConfig))
            return g.metadata["tokenizer.ggml.model"] == nil ? [config] : [config] + (try HFTokenizerExport.files(gguf: g))
        }
        var out: [(String, Data)] = []
        let configPath = (base.path as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configPath),
              var json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(file: configPath, location: "", "expected a JSON object")
        }
        json["torch_dtype"] = torchDtype
        for (k, v) in extraConfig { json[k] = v }
        if json["dtype"] != nil { json["dtype"] = torchDtype }
        out.append(("config.json", try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])))
        for file in hfSideFiles {
            if let bytes = FileManager.default.contents(atPath: (base.path as NSString).appendingPathComponent(file)) { out.append((file, bytes)) }
        }
        return out
    }
}
