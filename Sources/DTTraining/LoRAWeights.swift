// A LoRA adapter's tensors independent of any loaded model or file format: what `export`, `merge`, `eval`,
// `generate` and `train --init-adapter` read, from a PEFT directory or a llama.cpp GGUF adapter, checked
// against the base model's configuration before use. Values are fp32 in HF row order:
// A (r, in), B (out, r), DoRA's magnitude m (out), and the merge delta is ΔW (out, in) = s · B · A.
import DTFormats
import DTKernels
import DTModel
import Foundation

public struct LoRAWeights {
    public struct Pair {
        public var a: [Float]   // (r, in)
        public var b: [Float]   // (out, r)
    }
    public var options: LoRAOptions
    /// Key: LoRAAdapter.key(layer, projection).
    public var pairs: [Int: Pair]
    /// DoRA (options.useDoRA): the magnitude vector m (out) of each adapted projection, same keys; else empty.
    public var magnitudes: [Int: [Float]] = [:]
    /// Where it was read from (for messages).
    public var source: String

    public func pair(_ layer: Int, _ p: TensorNames.Projection) -> Pair? { pairs[LoRAAdapter.key(layer, p)] }

    /// The model-independent weights of a trained or loaded adapter.
    public init(_ adapter: LoRAAdapter, layers: Int, source: String) {
        options = adapter.options
        pairs = [:]
        self.source = source
        for l in 0..<layers {
            for p in adapter.options.targets {
                guard let t = adapter.tensors(l, p) else { continue }
                pairs[LoRAAdapter.key(l, p)] = Pair(a: t.a, b: t.b)
                if let m = t.magnitude { magnitudes[LoRAAdapter.key(l, p)] = m }
            }
        }
    }

    init(options: LoRAOptions, pairs: [Int: Pair], magnitudes: [Int: [Float]] = [:], source: String) {
        self.options = options; self.pairs = pairs; self.magnitudes = magnitudes; self.source = source
    }

    /// The adapted modules as files name them (LlamaConfig.adapterModules): per layer, a projection, or a fused
    /// tensor's parts (Phi-3), which share A and stack their B rows and DoRA magnitudes in part order.
    func modules(config: LlamaConfig) -> [(layer: Int, parts: [TensorNames.Projection], a: [Float], b: [Float], magnitude: [Float]?)] {
        var out: [(layer: Int, parts: [TensorNames.Projection], a: [Float], b: [Float], magnitude: [Float]?)] = []
        for l in 0..<config.layers {
            for parts in config.adapterModules {
                let present = parts.compactMap { pair(l, $0) }
                guard !present.isEmpty else { continue }
                precondition(present.count == parts.count, "a fused module's parts are adapted together")
                let m = parts.compactMap { magnitudes[LoRAAdapter.key(l, $0)] }
                out.append((l, parts, present[0].a, present.flatMap(\.b), m.count == parts.count ? m.flatMap { $0 } : nil))
            }
        }
        return out
    }

    /// Reads a PEFT LoRA directory or a GGUF LoRA adapter file, checked against `config`.
    public static func read(_ path: String, config: LlamaConfig) throws -> LoRAWeights {
        try isGGUFFile(path) ? readGGUF(path, config: config) : readPEFT(path, config: config)
    }

    /// True when `path` is a file starting with the GGUF magic.
    public static func isGGUFFile(_ path: String) -> Bool {
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir), !isDir.boolValue,
              let handle = FileHandle(forReadingAtPath: path) else { return false }
        defer { try? handle.close() }
        return (try? handle.read(upToCount: 4)) == Data("GGUF".utf8)
    }

    /// A PEFT directory: adapter_config.json + adapter_model.safetensors, every tensor a LoRA tensor of a
    /// listed module with the shape the base model implies (with use_dora, also each module's
    /// `lora_magnitude_vector` (out), or `….lora_magnitude_vector.weight` as the model names it).
    public static func readPEFT(_ dir: String, config: LlamaConfig) throws -> LoRAWeights {
        let options = try PEFTFormat.readLoRAOptions(dir)
        let fused = config.architecture.fusedProjections
        let path = (dir as NSString).appendingPathComponent("adapter_model.safetensors")
        let file = try SafetensorsFile(path: path)
        var a: [Int: [Float]] = [:], b: [Int: [Float]] = [:], m: [Int: [Float]] = [:]
        // Sorted, and the layer count checked over all names first: the same file gets the same error on every
        // run (a dictionary's order changes per process), and an adapter for a deeper model is named as that.
        let tensors = file.tensors.sorted { $0.key < $1.key }
        for (rawName, _) in tensors {
            let name = rawName.replacingOccurrences(of: ".default.weight", with: ".weight")
            if let (layer, _, _) = parsePEFTName(name, fused: fused), layer >= config.layers {
                throw FormatError.key(path, rawName, "layer \(layer), but the base model has \(config.layers) layers (an adapter for another model?)")
            }
        }
        for (rawName, tensor) in tensors {
            let name = rawName.replacingOccurrences(of: ".default.weight", with: ".weight")
            guard let (layer, parts, which) = parsePEFTName(name, fused: fused), parts.allSatisfy(options.targets.contains) else {
                throw FormatError.key(path, rawName, "not a LoRA tensor of this model and adapter_config (expected names like \(LoRAAdapter.tensorName(0, options.targets[0], "A", fused: fused)))")
            }
            if which == "m" && !options.useDoRA {
                throw FormatError.key(path, rawName, "a DoRA magnitude vector, but adapter_config.json has use_dora false")
            }
            // A fused module (Phi-3's qkv_proj) is its parts' rows one after another, sharing A.
            let outs = parts.map { config.projectionShape($0).out }, out = outs.reduce(0, +), inF = config.projectionShape(parts[0]).in
            let expected = which == "A" ? [options.rank, inF] : which == "B" ? [out, options.rank] : [out]
            guard tensor.shape == expected else {
                throw FormatError.key(path, rawName, "expected shape \(expected)\(which == "m" ? " (one magnitude per output feature of \(parts.map(\.rawValue).joined(separator: " + ")))" : ""), found \(tensor.shape)")
            }
            let values = try file.floats(rawName)
            try FormatError.requireFinite(values, file: path, key: rawName)
            var start = 0
            for (p, rows) in zip(parts, outs) {
                let width = which == "B" ? options.rank : 1
                switch which {
                case "A": a[LoRAAdapter.key(layer, p)] = values
                case "B": b[LoRAAdapter.key(layer, p)] = Array(values[(start * width)..<((start + rows) * width)])
                default: m[LoRAAdapter.key(layer, p)] = Array(values[start..<(start + rows)])
                }
                start += rows
            }
        }
        var pairs: [Int: Pair] = [:]
        for l in 0..<config.layers {
            for p in options.targets {
                let k = LoRAAdapter.key(l, p)
                guard let av = a[k], let bv = b[k] else {
                    throw FormatError.key(path, LoRAAdapter.tensorName(l, p, a[k] == nil ? "A" : "B", fused: fused), "missing tensor (adapter_config.json lists its module)")
                }
                pairs[k] = Pair(a: av, b: bv)
                if options.useDoRA && m[k] == nil {
                    throw FormatError.key(path, LoRAAdapter.magnitudeName(l, p, fused: fused), "missing tensor (adapter_config.json has use_dora true)")
                }
            }
        }
        return LoRAWeights(options: options, pairs: pairs, magnitudes: m, source: dir)
    }

    /// (layer, the module's projections, "A"|"B"|"m") of `base_model.model.model.layers.N.<module>.lora_X.weight` or
    /// `….<module>.lora_magnitude_vector[.weight]` (DoRA's m). With `fused` (Phi-3) q/k/v and gate/up are only
    /// reached through their fused modules (`qkv_proj`, `gate_up_proj`), as PEFT names them on such a model.
    static func parsePEFTName(_ name: String, fused: Bool = false) -> (Int, [TensorNames.Projection], String)? {
        let prefix = "base_model.model.model.layers."
        guard name.hasPrefix(prefix) else { return nil }
        var rest = name.dropFirst(prefix.count).split(separator: ".").map(String.init)
        if rest.count == 4 && rest[3] == "lora_magnitude_vector" { rest.append("weight") }
        guard rest.count == 5, let layer = Int(rest[0]), rest[4] == "weight",
              let which = ["lora_A": "A", "lora_B": "B", "lora_magnitude_vector": "m"][rest[3]] else { return nil }
        let path = "\(rest[1]).\(rest[2])"
        if fused, let m = TensorNames.FusedModule.allCases.first(where: { $0.modulePath == path }) { return (layer, m.parts, which) }
        guard let p = TensorNames.Projection.allCases.first(where: { $0.modulePath == path }),
              !fused || TensorNames.FusedModule.of(p) == nil else { return nil }
        return (layer, [p], which)
    }

    /// The weights as a LoRA adapter on `model` (for eval, generate, or to continue training with `dropout`).
    /// `useDoRA` makes plain LoRA weights a DoRA adapter whose magnitudes start at ‖W + s·B·A‖ (the model is
    /// unchanged by it).
    public func adapter(model: LlamaModel, dropout: Float = 0, useDoRA: Bool = false) -> LoRAAdapter {
        var o = options
        o.dropout = dropout
        o.useDoRA = options.useDoRA || useDoRA
        return LoRAAdapter(model: model, options: o, seed: 0, initial: self)
    }

    /// ΔW (out, in) = s · B · A of one projection in HF row order, or nil when the adapter does not target it.
    public func delta(_ layer: Int, _ p: TensorNames.Projection, config: LlamaConfig) -> [Float]? {
        guard let pair = pair(layer, p) else { return nil }
        let (out, inF) = config.projectionShape(p)
        var d = [Float](repeating: 0, count: out * inF)
        pair.b.withUnsafeBufferPointer { bp in
            pair.a.withUnsafeBufferPointer { ap in
                d.withUnsafeMutableBufferPointer { dp in
                    BLAS.gemm(.noTrans, .noTrans, m: out, n: inF, k: options.rank, alpha: options.scale, a: bp.baseAddress!, lda: options.rank,
                              b: ap.baseAddress!, ldb: inF, c: dp.baseAddress!, ldc: inF)
                }
            }
        }
        return d
    }
}
