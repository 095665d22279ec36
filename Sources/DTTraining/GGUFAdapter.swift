// llama.cpp's LoRA adapter GGUF (src/llama-adapter.cpp, convert_lora_to_gguf.py), read and written:
//   general.type = "adapter", general.architecture = the base's, adapter.type = "lora", adapter.lora.alpha (f32)
//   <base tensor name>.lora_a  ggml [in, r]   = PEFT lora_A (r, in), bytes unchanged
//   <base tensor name>.lora_b  ggml [r, out]  = PEFT lora_B (out, r), rows in the base GGUF's order: for the
//                                               llama architecture q/k rows permuted as the base's are
// A fused base tensor (Phi-3's attn_qkv, ffn_up of gate + up) has one adapter, as PEFT's qkv_proj / gate_up_proj.
// llama.cpp scales by alpha / r with r read from lora_b (alpha 0 means scale 1), so an rsLoRA adapter
// (s = α / √r) is written with alpha = α·√r; reading gives α = alpha, no rsLoRA, the same s. DoRA adapters are
// refused (llama.cpp has no magnitude vectors); `dtrain merge` folds them into the base instead.
import DTFormats
import DTModel
import Foundation

extension LoRAWeights {
    /// The GGUF adapter's `adapter.lora.alpha` that gives this adapter's scale under llama.cpp's alpha / r.
    public var llamaCppAlpha: Float { options.scale * Float(options.rank) }

    /// Reads a llama.cpp LoRA adapter GGUF, checked against `config` (architecture, layers, shapes).
    public static func readGGUF(_ path: String, config: LlamaConfig) throws -> LoRAWeights {
        let g = try GGUFFile(path: path)
        let type = g.metadata["general.type"]?.string
        guard type == "adapter" else {
            throw FormatError.key(path, "general.type", "expected \"adapter\" (a LoRA adapter GGUF), found \(type.map { "\"\($0)\"" } ?? "nothing")\(type == "model" || type == nil ? ": this is a model; pass it as --model" : "")")
        }
        guard let kind = g.metadata["adapter.type"]?.string, kind == "lora" else {
            throw FormatError.key(path, "adapter.type", "expected \"lora\", found \(g.metadata["adapter.type"]?.string ?? "nothing")")
        }
        let arch = g.metadata["general.architecture"]?.string ?? ""
        guard arch == config.ggufArchitecture else {
            throw FormatError.key(path, "general.architecture", "the adapter is for '\(arch)' but the base model is '\(config.ggufArchitecture)'")
        }
        var alpha: Float = 0
        if let v = g.metadata["adapter.lora.alpha"] {
            guard let d = v.double, d.isFinite, d >= 0 else { throw FormatError.key(path, "adapter.lora.alpha", "expected a finite number ≥ 0") }
            alpha = Float(d)
        }
        var where_: [String: (Int, [TensorNames.Projection])] = [:]
        for l in 0..<config.layers {
            for parts in config.adapterModules { where_[TensorNames.gguf(TensorNames.moduleWeight(l, parts))!] = (l, parts) }
        }
        var a: [Int: [Float]] = [:], b: [Int: [Float]] = [:]
        var rank: Int?
        for info in g.tensors {
            let isA = info.name.hasSuffix(".lora_a"), isB = info.name.hasSuffix(".lora_b")
            let base = String(info.name.dropLast(isA || isB ? 7 : 0))
            guard isA || isB, let (layer, parts) = where_[base] else {
                throw FormatError.key(path, info.name, isA || isB
                    ? "LoRA on '\(base)' is not supported (dtrain adapts the seven attention and MLP projections of \(config.layers) layers)"
                    : "expected only <tensor>.lora_a / <tensor>.lora_b tensors in a LoRA adapter")
            }
            guard info.type.canDequantize else {
                throw FormatError.key(path, info.name, "tensor type \(info.type.name) is not supported (expected F32, F16, BF16 or Q8_0)")
            }
            let outs = parts.map { config.projectionShape($0).out }, out = outs.reduce(0, +), inF = config.projectionShape(parts[0]).in
            guard info.dims.count == 2 else { throw FormatError.key(path, info.name, "expected 2 dimensions, found \(info.dims)") }
            let r = isA ? info.dims[1] : info.dims[0]
            let expected = isA ? [inF, r] : [r, out]
            guard info.dims == expected, r > 0 else {
                throw FormatError.key(path, info.name, "expected ggml shape \(expected) for the base's \(base) (\(out) × \(inF)), found \(info.dims)")
            }
            if let rank, rank != r {
                throw FormatError.key(path, info.name, "rank \(r) differs from the adapter's rank \(rank) (per-module ranks are not supported)")
            }
            rank = r
            var values = [Float](repeating: 0, count: info.elementCount)
            values.withUnsafeMutableBufferPointer { Dequantize.run(info.type, g.data(of: info).baseAddress!, $0.baseAddress!, count: info.elementCount) }
            try FormatError.requireFinite(values, file: path, key: info.name)
            var start = 0
            for (p, rows) in zip(parts, outs) {   // a fused module's parts share A and take their rows of B
                let k = LoRAAdapter.key(layer, p)
                if isA { a[k] = values } else {
                    var part = Array(values[(start * r)..<((start + rows) * r)])
                    if let heads = config.ggufPermutedHeads(p) { part = LlamaCppRowOrder.reorder(part, rows: rows, cols: r, heads: heads, toStored: false) }
                    b[k] = part
                }
                start += rows
            }
        }
        guard let rank else { throw FormatError(file: path, location: "", "the adapter has no LoRA tensors") }
        let targets = TensorNames.Projection.allCases.filter { p in a[LoRAAdapter.key(0, p)] != nil || b[LoRAAdapter.key(0, p)] != nil }
        var pairs: [Int: Pair] = [:]
        for l in 0..<config.layers {
            for parts in config.adapterModules {
                let p = parts[0], k = LoRAAdapter.key(l, p)
                let name = TensorNames.gguf(TensorNames.moduleWeight(l, parts))!
                switch (a[k], b[k], targets.contains(p)) {
                case (_?, _?, true): for part in parts { pairs[LoRAAdapter.key(l, part)] = Pair(a: a[LoRAAdapter.key(l, part)]!, b: b[LoRAAdapter.key(l, part)]!) }
                case (nil, nil, false): break
                case (_, _, true):
                    throw FormatError.key(path, name + (a[k] == nil ? ".lora_a" : ".lora_b"), "missing: layer 0 adapts \(String(name.split(separator: ".")[2])), so every layer must (and needs both lora_a and lora_b)")
                default:
                    throw FormatError.key(path, name + (a[k] != nil ? ".lora_a" : ".lora_b"), "layer \(l) adapts \(String(name.split(separator: ".")[2])) but layer 0 does not (per-layer targets are not supported)")
                }
            }
        }
        var options = LoRAOptions()
        options.rank = rank
        options.alpha = alpha == 0 ? Float(rank) : alpha
        options.rsLoRA = false
        options.dropout = 0
        options.targets = targets
        return LoRAWeights(options: options, pairs: pairs, source: path)
    }

    /// Refuses a DoRA adapter, which llama.cpp cannot apply (no magnitude vectors): it is merged instead.
    public func requireLlamaCppCompatible() throws {
        guard options.useDoRA else { return }
        throw CommandError("\(source) is a DoRA adapter (use_dora): llama.cpp has no DoRA, so it cannot be written as a GGUF adapter; fold it into the base instead with `dtrain merge --adapter \(source) --format gguf -o merged.gguf`")
    }

    /// Tensor types a GGUF adapter can be written in.
    public static let ggufOutTypes: [String: GGMLType] = ["f32": .f32, "f16": .f16, "bf16": .bf16, "q8_0": .q8_0]

    /// Writes the adapter as a llama.cpp LoRA GGUF at `path` (temporary sibling, published by rename).
    /// Returns the tensors that could not be written in `outType` (a row length that is not a whole
    /// number of blocks) and were written as F16 instead.
    @discardableResult
    public func writeGGUF(_ path: String, config: LlamaConfig, outType: GGMLType, description: [GGUFMetadataEntry],
                          overwrite: Bool) throws -> [String] {
        precondition(Self.ggufOutTypes.values.contains(outType), "GGUF adapter type \(outType.name)")
        try requireLlamaCppCompatible()
        var metadata: [GGUFMetadataEntry] = [
            .value("general.architecture", .string(config.ggufArchitecture)),
            .value("general.type", .string("adapter")),
            .value("adapter.type", .string("lora")),
            .value("adapter.lora.alpha", .f32(llamaCppAlpha)),
        ]
        metadata += description
        var specs: [GGUFTensorSpec] = []
        var payload: [[Float]] = []
        var fellBack: [String] = []
        for module in modules(config: config) {
            let p = module.parts[0], out = module.b.count / options.rank, inF = module.a.count / options.rank
            let name = TensorNames.gguf(TensorNames.moduleWeight(module.layer, module.parts))!
            var bStored = module.b
            if let heads = config.ggufPermutedHeads(p) {   // never a fused module: those are not permuted
                bStored = LlamaCppRowOrder.reorder(module.b, rows: out, cols: options.rank, heads: heads, toStored: true)
            }
            for (suffix, dims, values) in [(".lora_a", [inF, options.rank], module.a), (".lora_b", [options.rank, out], bStored)] {
                var type = outType
                if dims[0] % type.blockSize != 0 { type = .f16; fellBack.append(name + suffix) }
                specs.append(GGUFTensorSpec(name: name + suffix, dims: dims, type: type))
                payload.append(values)
            }
        }
        let writer = try GGUFWriter(path: path, metadata: metadata, tensors: specs, overwrite: overwrite)
        for (spec, values) in zip(specs, payload) {
            let bytes = spec.type.byteCount(elements: values.count)!
            var encoded = [UInt8](repeating: 0, count: bytes)
            values.withUnsafeBufferPointer { src in
                encoded.withUnsafeMutableBytes { Quantize.run(spec.type, src.baseAddress!, $0.baseAddress!, count: values.count) }
            }
            try encoded.withUnsafeBytes { try writer.writeTensor(spec.name, $0) }
        }
        try writer.finish()
        return fellBack
    }
}
