// Folds a LoRA adapter into its base, W' = W + s · B · A for every targeted projection (DoRA, as PEFT's
// merge: W' = m / ‖W + s·B·A‖ ⊙ (W + s·B·A), norms per output row), streaming one
// tensor at a time (the largest single tensor is the only one in memory) into a temporary sibling that
// is published by rename. GGUF out keeps every base key and copies untouched tensors block for block;
// HF out writes safetensors shards, an index, config and tokenizer files.
import DTFormats
import DTKernels
import DTModel
import Foundation

/// Tensor types of a merged model. `same`: GGUF, merged tensors in the base's type where dtrain can encode
/// it (else Q8_0), the rest copied; HF, float tensors keep their dtype and GGUF blocks become F32.
public enum MergeOutType: String, CaseIterable, Sendable {
    case f32, f16, bf16, q8_0, q4_0, q4_1, same

    public var ggml: GGMLType? {
        switch self {
        case .f32: .f32; case .f16: .f16; case .bf16: .bf16; case .q8_0: .q8_0; case .q4_0: .q4_0; case .q4_1: .q4_1; case .same: nil
        }
    }

    /// llama.cpp's `general.file_type` (enum llama_ftype) for a model mostly of this type.
    public var llamaFileType: UInt32? {
        switch self {
        case .f32: 0; case .f16: 1; case .q4_0: 2; case .q4_1: 3; case .q8_0: 7; case .bf16: 32; case .same: nil
        }
    }
}

public struct MergeReport {
    /// Tensors with the adapter folded in, converted to another type, and copied unchanged.
    public var merged = 0, converted = 0, copied = 0
    public var notes: [String] = []
    /// Σ‖ΔW‖² over merged tensors, and Σ⟨encode(W + ΔW) − W, ΔW⟩: how much of the change survives the
    /// output type. Rounding noise is uncorrelated with ΔW and drops out; blocks too coarse for ΔW (a merged
    /// tensor re-quantized onto the grid its base values already lie on) keep little of it.
    public var deltaSquares = 0.0, keptProjection = 0.0
    /// The fraction of the adapter's change the merged tensors carry (1: all of it).
    public var keptFraction: Double { deltaSquares > 0 ? keptProjection / deltaSquares : 1 }
}

public enum ModelMerge {
    /// (layer, projections) of each adapted module's HF weight name: a projection, or a fused tensor (Phi-3).
    static func targets(_ weights: LoRAWeights, config: LlamaConfig) -> [String: (Int, [TensorNames.Projection])] {
        var out: [String: (Int, [TensorNames.Projection])] = [:]
        for l in 0..<config.layers {
            for parts in config.adapterModules where parts.contains(where: { weights.pair(l, $0) != nil }) {
                out[TensorNames.moduleWeight(l, parts)] = (l, parts)
            }
        }
        return out
    }

    /// `fold` of each part of a module into `values`, the module's stored tensor (a fused tensor holds its parts'
    /// rows one after another); `permuted`: rows are in the GGUF's order (llama.cpp's Q/K permutation).
    static func foldModule(_ values: inout [Float], layer: Int, parts: [TensorNames.Projection], weights: LoRAWeights,
                           config: LlamaConfig, permuted: Bool, file: String, name: String) throws {
        var start = 0
        for p in parts {
            let (rows, cols) = config.projectionShape(p)
            defer { start += rows }
            guard let delta = weights.delta(layer, p, config: config) else { continue }
            let range = (start * cols)..<((start + rows) * cols)
            var part = Array(values[range])
            try fold(&part, delta: delta, magnitude: weights.magnitudes[LoRAAdapter.key(layer, p)],
                     permutedHeads: permuted ? config.ggufPermutedHeads(p) : nil, rows: rows, cols: cols, file: file, name: name)
            values.replaceSubrange(range, with: part)
        }
    }

    /// fp32 values of a stored tensor in its stored row order.
    static func dequantized(_ type: GGMLType, _ data: UnsafeRawPointer, count: Int, file: String, name: String) throws -> [Float] {
        guard type.canDequantize else { throw FormatError.key(file, name, "tensor type \(type.name) cannot be dequantized by dtrain") }
        var values = [Float](repeating: 0, count: count)
        values.withUnsafeMutableBufferPointer { Dequantize.run(type, data, $0.baseAddress!, count: count) }
        return values
    }

    /// `values` (stored order) + ΔW, with ΔW reordered like the stored rows; with DoRA's `magnitude` (out, HF
    /// order) each row then scaled by m / ‖W + ΔW‖ (a row's norm does not depend on where it is stored). Refuses
    /// a non-finite result.
    static func fold(_ values: inout [Float], delta: [Float], magnitude: [Float]?, permutedHeads: Int?, rows: Int, cols: Int,
                     file: String, name: String) throws {
        let d = permutedHeads.map { LlamaCppRowOrder.reorder(delta, rows: rows, cols: cols, heads: $0, toStored: true) } ?? delta
        precondition(values.count == d.count, "fold \(values.count) vs \(d.count)")
        for i in values.indices { values[i] += d[i] }
        if let magnitude {
            precondition(magnitude.count == rows, "fold: \(magnitude.count) magnitudes for \(rows) rows")
            let m = permutedHeads.map { LlamaCppRowOrder.reorder(magnitude, rows: rows, cols: 1, heads: $0, toStored: true) } ?? magnitude
            for r in 0..<rows {
                var squares = 0.0
                for c in 0..<cols { squares += Double(values[r * cols + c]) * Double(values[r * cols + c]) }
                let factor = squares > 0 ? Float(Double(m[r]) / squares.squareRoot()) : 0
                for c in 0..<cols { values[r * cols + c] *= factor }
            }
        }
        if let i = values.firstIndex(where: { !$0.isFinite }) {
            throw FormatError.key(file, name, "merged element \(i) is \(values[i]) (the adapter or the base holds non-finite values)")
        }
    }

    static func encoded(_ values: [Float], as type: GGMLType) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: type.byteCount(elements: values.count)!)
        values.withUnsafeBufferPointer { src in out.withUnsafeMutableBytes { Quantize.run(type, src.baseAddress!, $0.baseAddress!, count: values.count) } }
        return out
    }

    // MARK: GGUF

    /// Merges into a GGUF with every key of the base GGUF (tokenizer, chat template, hyperparameters).
    public static func toGGUF(base: ModelSource, weights: LoRAWeights, outType: MergeOutType, path: String, overwrite: Bool,
                              extraMetadata: [GGUFMetadataEntry]) throws -> MergeReport {
        guard let g = base.gguf else {
            throw FormatError(file: base.path, location: "", "GGUF output needs a GGUF base (this is a Hugging Face directory): convert the base with llama.cpp's convert_hf_to_gguf.py, or merge with --format hf")
        }
        let config = base.config
        var byGGUF: [String: (Int, [TensorNames.Projection])] = [:]
        for (hf, lp) in targets(weights, config: config) { byGGUF[TensorNames.gguf(hf)!] = lp }
        enum Action { case copy, convert, merge(Int, [TensorNames.Projection]) }
        var report = MergeReport()
        var plan: [(GGUFTensorInfo, GGUFTensorSpec, Action)] = []
        for info in g.tensors {
            let target = byGGUF[info.name]
            var type: GGMLType
            if let wanted = outType.ggml {
                type = info.dims.count == 1 ? .f32 : wanted
            } else if target != nil && !Quantize.canEncode(info.type) {
                type = .q8_0
                report.notes.append("\(info.name): dtrain cannot encode \(info.type.name); written as Q8_0")
            } else {
                type = info.type
            }
            if info.dims[0] % type.blockSize != 0 {
                report.notes.append("\(info.name): rows of \(info.dims[0]) are not whole \(type.name) blocks; written as F16")
                type = .f16
            }
            let action: Action = target.map { .merge($0.0, $0.1) } ?? (type == info.type ? .copy : .convert)
            plan.append((info, GGUFTensorSpec(name: info.name, dims: info.dims, type: type), action))
        }
        var metadata: [GGUFMetadataEntry] = []
        for key in g.metadataKeys {
            if key == "general.file_type", let ft = outType.llamaFileType { metadata.append(.value(key, .u32(ft))); continue }
            metadata.append(.copied(key: key, raw: g.rawRecord(key)!, owner: g))
        }
        if g.metadata["general.file_type"] == nil, let ft = outType.llamaFileType { metadata.append(.value("general.file_type", .u32(ft))) }
        metadata += extraMetadata
        let writer = try GGUFWriter(path: path, metadata: metadata, tensors: plan.map(\.1),
                                    alignment: g.metadata["general.alignment"]?.int ?? 32, overwrite: overwrite)
        for (info, spec, action) in plan {
            switch action {
            case .copy:
                try writer.writeTensor(info.name, g.data(of: info))
                report.copied += 1
            case .convert:
                let values = try dequantized(info.type, g.data(of: info).baseAddress!, count: info.elementCount, file: g.path, name: info.name)
                try encoded(values, as: spec.type).withUnsafeBytes { try writer.writeTensor(info.name, $0) }
                report.converted += 1
            case .merge(let l, let parts):
                let original = try dequantized(info.type, g.data(of: info).baseAddress!, count: info.elementCount, file: g.path, name: info.name)
                var values = original
                try foldModule(&values, layer: l, parts: parts, weights: weights, config: config, permuted: true, file: g.path, name: info.name)
                let bytes = encoded(values, as: spec.type)
                let decoded = try bytes.withUnsafeBytes { try dequantized(spec.type, $0.baseAddress!, count: values.count, file: path, name: info.name) }
                for i in values.indices {
                    let change = Double(values[i] - original[i])
                    report.deltaSquares += change * change
                    report.keptProjection += Double(decoded[i] - original[i]) * change
                }
                try bytes.withUnsafeBytes { try writer.writeTensor(info.name, $0) }
                report.merged += 1
            }
        }
        try writer.finish()
        return report
    }
}
