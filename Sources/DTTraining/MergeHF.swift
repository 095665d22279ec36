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
            for p in TensorNames.Projection.allCases { hf += [TensorNames.projection(l, p), TensorNames.projection(l, p, bias: true)] }
        }
        return Dictionary(uniqueKeysWithValues: hf.map { (TensorNames.gguf($0)!, $0) })
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
        default: throw CommandLineError("--outtype \(outType.rawValue) is a GGUF block type; an HF directory takes f32, f16, bf16 or same")
        }
        // The tensors in HF names, in the base's order.
        var names: [String] = []
        if let g = base.gguf {
            let map = hfNames(ggufOf: config)
            for info in g.tensors {
                guard let hf = map[info.name] else {
                    throw FormatError.key(g.path, info.name, "no Hugging Face tensor corresponds to it (\(info.name == "rope_freqs.weight" ? "Llama-3.1 RoPE factors are not written to an HF config yet" : "unknown tensor"))")
                }
                names.append(hf)
            }
        } else {
            for t in base.safetensorsInventory {
                guard SafetensorsDType(rawValue: t.dtype)?.ggmlType != nil else {
                    throw FormatError.key(base.path, t.name, "dtype \(t.dtype) (a quantized checkpoint) cannot be merged; merge into the unquantized base")
                }
                names.append(t.name)
            }
        }
        var tensors: [(name: String, raw: RawTensor, dtype: SafetensorsDType)] = []
        for name in names {
            guard let raw = try base.tensor(name) else { throw FormatError.key(base.path, name, "missing tensor") }
            tensors.append((name, raw, dtypeOf(raw.type)))
        }
        // Shards in order, each at most maxShardBytes (a larger single tensor gets a shard of its own).
        var shards: [[Int]] = [[]]
        var used = 0
        for (i, t) in tensors.enumerated() {
            let bytes = t.raw.shape.reduce(1, *) * t.dtype.size
            if used > 0 && used + bytes > maxShardBytes { shards.append([]); used = 0 }
            shards[shards.count - 1].append(i)
            used += bytes
        }
        let fileNames = shards.count == 1 ? ["model.safetensors"]
            : (1...shards.count).map { String(format: "model-%05d-of-%05d.safetensors", $0, shards.count) }
        let byName = targets(weights, config: config)
        var report = MergeReport()
        try AtomicDirectory.build(dir, replacing: overwrite) { temporary in
            var weightMap: [String: String] = [:]
            var totalBytes = 0
            for (shard, file) in zip(shards, fileNames) {
                let header = SafetensorsWriter.header(shard.map { (tensors[$0].name, tensors[$0].dtype, tensors[$0].raw.shape) }, metadata: ["format": "pt"])
                let out = try AtomicFileWriter(path: (temporary as NSString).appendingPathComponent(file), overwrite: false)
                try header.withUnsafeBytes { try out.write($0) }
                for i in shard {
                    let (name, raw, dtype) = tensors[i]
                    let count = raw.shape.reduce(1, *)
                    var values = try dequantized(raw.type, raw.data, count: count, file: raw.file, name: name)
                    let cols = raw.shape.count == 2 ? raw.shape[1] : 1
                    if let heads = raw.permutedHeads {
                        values = LlamaCppRowOrder.reorder(values, rows: raw.shape[0], cols: cols, heads: heads, toStored: false)
                    }
                    if let (l, p) = byName[name] {
                        try fold(&values, delta: weights.delta(l, p, config: config)!, permutedHeads: nil, rows: raw.shape[0], cols: cols,
                                 file: raw.file, name: name)
                        report.merged += 1
                    } else if dtype.ggmlType == raw.type {
                        report.copied += 1
                    } else {
                        report.converted += 1
                    }
                    try encoded(values, as: dtype.ggmlType!).withUnsafeBytes { try out.write($0) }
                    weightMap[name] = file
                    totalBytes += count * dtype.size
                }
                try out.commit()
            }
            if shards.count > 1 {
                let index: [String: Any] = ["metadata": ["total_size": totalBytes], "weight_map": weightMap]
                try AtomicDirectory.writeFile((temporary as NSString).appendingPathComponent("model.safetensors.index.json"),
                                              try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys]))
            }
            let torchDtype = outType == .same ? (tensors.first.map { $0.dtype == .bf16 ? "bfloat16" : $0.dtype == .f16 ? "float16" : "float32" } ?? "float32")
                : ["f32": "float32", "f16": "float16", "bf16": "bfloat16"][outType.rawValue]!
            if let g = base.gguf, g.metadata["tokenizer.ggml.model"] == nil {
                report.notes.append("\(g.path) has no tokenizer: the directory has no tokenizer files")
            }
            for (file, data) in try sideFiles(base: base, torchDtype: torchDtype) {
                try AtomicDirectory.writeFile((temporary as NSString).appendingPathComponent(file), data)
            }
        }
        return report
    }

    /// config.json (dtype updated) and the tokenizer / generation files of the base, made from GGUF metadata
    /// when the base is a GGUF file.
    static func sideFiles(base: ModelSource, torchDtype: String) throws -> [(String, Data)] {
        if let g = base.gguf {
            let config = ("config.json", try HFConfigExport.configJSON(base.config, gguf: g, torchDtype: torchDtype))
            return g.metadata["tokenizer.ggml.model"] == nil ? [config] : [config] + (try HFTokenizerExport.files(gguf: g))
        }
        var out: [(String, Data)] = []
        let configPath = (base.path as NSString).appendingPathComponent("config.json")
        guard let data = FileManager.default.contents(atPath: configPath),
              var json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(file: configPath, location: "", "expected a JSON object")
        }
        json["torch_dtype"] = torchDtype
        if json["dtype"] != nil { json["dtype"] = torchDtype }
        out.append(("config.json", try JSONSerialization.data(withJSONObject: json, options: [.prettyPrinted, .sortedKeys])))
        for file in hfSideFiles {
            if let bytes = FileManager.default.contents(atPath: (base.path as NSString).appendingPathComponent(file)) { out.append((file, bytes)) }
        }
        return out
    }
}
