// Opens the model files people have — one GGUF file, or a Hugging Face directory (config.json plus
// model.safetensors or a sharded model.safetensors.index.json) — and presents both the same way:
// a LlamaConfig and tensors looked up by HF name.
import DTFormats
import Foundation

public struct RawTensor {
    public var name: String
    public var type: GGMLType
    /// Row-major shape, outermost first (HF order: a weight is [out, in]).
    public var shape: [Int]
    public var data: UnsafeRawPointer
    public var owner: AnyObject
    /// Q/K rows are in llama.cpp's permuted order with this many heads.
    public var permutedHeads: Int?
    public var file: String
}

public final class ModelSource {
    public let path: String
    public let config: LlamaConfig
    public let gguf: GGUFFile?
    public let hfDirectory: String?
    private let shards: [String: SafetensorsFile]
    private let weightMap: [String: String]

    /// A tensor of an HF directory by its stored name, with its file (nil if absent or for GGUF).
    func safetensor(_ name: String) throws -> (file: SafetensorsFile, tensor: SafetensorsTensor)? {
        guard let fileName = weightMap[name], let file = shards[fileName], let t = file.tensors[name] else { return nil }
        return (file, t)
    }

    /// Drops the resident pages of every mapped model file (see MappedFile.releaseResidentPages).
    public func releaseResidentPages() {
        gguf?.mapped.releaseResidentPages()
        for shard in shards.values { shard.mapped.releaseResidentPages() }
    }

    public init(path: String) throws {
        self.path = path
        var isDir: ObjCBool = false
        guard FileManager.default.fileExists(atPath: path, isDirectory: &isDir) else {
            throw FormatError(file: path, location: "", "model not found (expected a .gguf file or a Hugging Face model directory)")
        }
        if isDir.boolValue {
            let configPath = (path as NSString).appendingPathComponent("config.json")
            config = try LlamaConfig(hfConfig: configPath)
            let indexPath = (path as NSString).appendingPathComponent("model.safetensors.index.json")
            var shards: [String: SafetensorsFile] = [:]
            var map: [String: String] = [:]
            if FileManager.default.fileExists(atPath: indexPath) {
                let data = try Data(contentsOf: URL(fileURLWithPath: indexPath))
                guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any],
                      let weightMap = json["weight_map"] as? [String: String] else {
                    throw FormatError.key(indexPath, "weight_map", "expected an object mapping tensor names to shard files")
                }
                for (name, file) in weightMap {
                    guard !file.contains("/") else { throw FormatError.key(indexPath, "weight_map.\(name)", "shard '\(file)' must be a file name in the model directory") }
                    if shards[file] == nil {
                        shards[file] = try SafetensorsFile(path: (path as NSString).appendingPathComponent(file))
                    }
                    guard shards[file]!.tensors[name] != nil else {
                        throw FormatError.key(indexPath, "weight_map.\(name)", "tensor is not in shard '\(file)'")
                    }
                    map[name] = file
                }
            } else {
                let single = (path as NSString).appendingPathComponent("model.safetensors")
                let file = try SafetensorsFile(path: single)
                shards["model.safetensors"] = file
                for name in file.tensors.keys { map[name] = "model.safetensors" }
            }
            self.shards = shards
            weightMap = map
            gguf = nil
            hfDirectory = path
        } else {
            let g = try GGUFFile(path: path)
            gguf = g
            config = try LlamaConfig(gguf: g)
            shards = [:]
            weightMap = [:]
            hfDirectory = nil
        }
    }

    private init(_ other: ModelSource, config: LlamaConfig) {
        path = other.path; self.config = config; gguf = other.gguf; hfDirectory = other.hfDirectory
        shards = other.shards; weightMap = other.weightMap
    }

    /// The same files seen as a model of only its first `layers` layers (embedding, those layers, final norm
    /// and head): what `dtrain plan` loads to measure a layer's memory and time without loading the whole model.
    public func firstLayers(_ layers: Int) -> ModelSource {
        precondition(layers >= 1 && layers <= config.layers, "firstLayers: 1…\(config.layers)")
        var c = config
        c.layers = layers
        return ModelSource(self, config: c)
    }

    /// Bytes stored for tensor `name` in any dtype (a bitsandbytes weight's U8 codes too), 0 if absent or unreadable.
    func storedBytes(_ name: String) -> Int {
        if let t = try? tensor(name) { return t.byteCount }
        return (try? safetensor(name))??.tensor.byteCount ?? 0
    }

    /// The tensor with HF name `name`, or nil if the file has none. In a family with fused projections (Phi-3) a
    /// projection stored inside its fused tensor is that tensor's row range (a view: whole rows are whole blocks).
    public func tensor(_ name: String) throws -> RawTensor? {
        if config.architecture.fusedProjections, let (layer, p) = TensorNames.parseProjection(name),
           let rows = config.fusedRows(p), gguf != nil || weightMap[name] == nil {
            return try fusedPart(layer: layer, p, rows: rows)
        }
        return try storedTensor(name)
    }

    /// Rows `rows` of layer `layer`'s fused tensor, as projection p's tensor; a missing or misshapen fused tensor is
    /// an error naming it.
    private func fusedPart(layer: Int, _ p: TensorNames.Projection,
                           rows: (module: TensorNames.FusedModule, start: Int, total: Int)) throws -> RawTensor {
        let fusedName = TensorNames.fused(layer, rows.module)
        let cols = config.projectionShape(p).in, count = config.projectionShape(p).out
        let key = gguf != nil ? TensorNames.gguf(fusedName)! : fusedName
        if gguf == nil, weightMap["\(fusedName).quant_state.bitsandbytes__nf4"] != nil {
            throw FormatError.key(path, fusedName, "a bitsandbytes 4-bit fused tensor (\(rows.module.rawValue)) is not supported; load the unquantized model with --quant nf4")
        }
        guard let whole = try storedTensor(fusedName) else {
            throw FormatError.key(path, key, "missing tensor (expected shape \([rows.total, cols]): \(rows.module.parts.map(\.rawValue).joined(separator: ", ")) fused)")
        }
        guard whole.shape == [rows.total, cols], let rowBytes = whole.type.byteCount(elements: cols) else {
            throw FormatError.key(whole.file, key, "expected shape \([rows.total, cols]) (\(rows.module.parts.map(\.rawValue).joined(separator: ", ")) fused), found \(whole.shape)")
        }
        return RawTensor(name: TensorNames.projection(layer, p), type: whole.type, shape: [count, cols],
                         data: whole.data + rows.start * rowBytes, owner: whole.owner, permutedHeads: nil, file: whole.file)
    }

    /// The tensor stored under HF name `name` (its llama.cpp name in a GGUF), or nil.
    private func storedTensor(_ name: String) throws -> RawTensor? {
        if let g = gguf {
            guard let ggufName = TensorNames.gguf(name, sandwich: config.architecture.sandwichNorms), let info = g.tensor(ggufName) else { return nil }
            guard info.type.canDequantize else {
                throw FormatError.key(g.path, ggufName, "tensor type \(info.type.name) is not supported (expected F32, F16, BF16, Q8_0, Q4_0, Q4_1, Q4_K, Q5_K or Q6_K)")
            }
            var permuted: Int?
            if name.hasSuffix("q_proj.weight") || name.hasSuffix("q_proj.bias") { permuted = config.ggufPermutedHeads(.q) }
            if name.hasSuffix("k_proj.weight") || name.hasSuffix("k_proj.bias") { permuted = config.ggufPermutedHeads(.k) }
            return RawTensor(name: name, type: info.type, shape: info.dims.reversed(), data: g.data(of: info).baseAddress!,
                             owner: g, permutedHeads: permuted, file: g.path)
        }
        guard let file = weightMap[name], let shard = shards[file], let t = shard.tensors[name] else { return nil }
        guard let type = t.dtype.ggmlType else {
            throw FormatError.key(shard.path, name, "dtype \(t.dtype.rawValue) is not supported (expected F32, F16 or BF16)")
        }
        let data = shard.data(of: t)
        return RawTensor(name: name, type: type, shape: t.shape, data: data.baseAddress ?? UnsafeRawPointer(bitPattern: 1)!,
                         owner: shard, permutedHeads: nil, file: shard.path)
    }

    /// Every tensor of an HF directory as stored (any dtype, e.g. bitsandbytes' U8 codes), sorted by name.
    public var safetensorsInventory: [(name: String, dtype: String, shape: [Int], bytes: Int)] {
        weightMap.keys.sorted().compactMap { name in
            guard let t = shards[weightMap[name]!]?.tensors[name] else { return nil }
            return (name, t.dtype.rawValue, t.shape, t.byteCount)
        }
    }

    /// Extra RoPE frequency divisors (GGUF `rope_freqs.weight`, written by llama.cpp for Llama-3.1+).
    public func ropeFrequencyFactors() throws -> [Float]? {
        guard let g = gguf, let info = g.tensor("rope_freqs.weight") else { return nil }
        guard info.elementCount == config.headDim / 2, info.type == .f32 else {
            throw FormatError.key(g.path, "rope_freqs.weight", "expected F32 [\(config.headDim / 2)], found \(info.type.name) \(info.dims)")
        }
        var out = [Float](repeating: 0, count: info.elementCount)
        out.withUnsafeMutableBufferPointer { Dequantize.run(.f32, g.data(of: info).baseAddress!, $0.baseAddress!, count: info.elementCount) }
        return out
    }
}

extension RawTensor {
    /// Drops the resident pages of this tensor's bytes in its mapped file (see MappedFile.releaseResidentPages(of:)):
    /// for a tensor whose converted copy is all the model keeps.
    /// Stored bytes (0 for a type without a block size, which loading refuses anyway).
    var byteCount: Int { type.byteCount(elements: shape.reduce(1, *)) ?? 0 }

    public func releaseResidentPages() {
        let count = byteCount
        guard count > 0 else { return }
        let mapped = (owner as? GGUFFile)?.mapped ?? (owner as? SafetensorsFile)?.mapped
        mapped?.releaseResidentPages(of: UnsafeRawBufferPointer(start: data, count: count))
    }

    /// The tensor as a frozen matrix over its stored bytes.
    func asMatrix(rows: Int, cols: Int) -> FrozenMatrix {
        FrozenMatrix(rows: rows, cols: cols, storage: .quantized(type, data, owner: owner), permutedHeads: permutedHeads)
    }
}
