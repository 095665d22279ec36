// `dtrain quantize --quant nf4`: the base with its seven projections in NF4 + double quantization, saved as a
// bitsandbytes 4-bit Hugging Face directory (the layout transformers' `load_in_4bit` saves and dtrain reads,
// see DTModel/BitsandbytesCheckpoint.swift), so a later run — or transformers — loads it without quantizing.
// The codes are the ones dtrain makes at load (`precision: nf4`), byte for byte; other tensors keep their dtype
// (GGUF blocks become F32). Streamed one weight at a time through HFDirectoryWriter.
import DTFormats
import DTKernels
import DTModel
import Foundation

public enum NF4Export {
    public struct Report { public var quantized = 0, kept = 0 }

    /// bitsandbytes' quant state JSON; the offset is written with a fixed width (9 significant digits
    /// round-trip a Float) so the tensor's size is known before the weight is quantized.
    static func quantState(shape: [Int], dtype: String, offset: Float) -> [UInt8] {
        let json = "{\"quant_type\": \"nf4\", \"blocksize\": \(NF4.blockSize), \"dtype\": \"\(dtype)\", \"shape\": [\(shape[0]), \(shape[1])], "
            + "\"nested_blocksize\": \(NF4.nestedBlockSize), \"nested_dtype\": \"float32\", \"nested_offset\": \(String(format: "%.9e", offset))}"
        return Array(json.utf8)
    }

    public static func toHF(base: ModelSource, dir: String, overwrite: Bool, maxShardBytes: Int) throws -> Report {
        let c = base.config
        guard !c.architecture.fusedProjections else {   // bitsandbytes quantizes a fused tensor whole; reading a part of one is not built
            throw CommandError("dtrain quantize does not write \(c.architecture.name)'s fused projections (qkv_proj, gate_up_proj) yet; train with --quant nf4 instead, which quantizes the base while loading")
        }
        let tensors = try ModelMerge.hfTensors(base)
        var projections = Set<String>()
        for l in 0..<c.layers { for p in TensorNames.Projection.allCases { projections.insert(TensorNames.projection(l, p)) } }
        let keep: (GGMLType) -> SafetensorsDType = { $0 == .f16 ? .f16 : $0 == .bf16 ? .bf16 : .f32 }
        let torchDtype = HFDirectoryWriter.torchName(tensors.first.map { keep($0.raw.type) } ?? .f32)
        enum Part { case whole, codes, absmax, nestedAbsmax, nestedMap, map, state }
        var plan: [HFDirectoryWriter.TensorPlan] = []
        var parts: [(tensor: Int, part: Part)] = []
        var report = Report()
        for (i, t) in tensors.enumerated() {
            let n = t.raw.shape.reduce(1, *)
            guard projections.contains(t.name), t.raw.shape.count == 2, n % NF4.blockSize == 0 else {
                plan.append(.init(name: t.name, dtype: keep(t.raw.type), shape: t.raw.shape)); parts.append((i, .whole))
                report.kept += 1
                continue
            }
            let blocks = n / NF4.blockSize, nested = (blocks + NF4.nestedBlockSize - 1) / NF4.nestedBlockSize
            let stateBytes = quantState(shape: t.raw.shape, dtype: torchDtype, offset: 0).count
            for (suffix, dtype, shape, part) in [("", SafetensorsDType.u8, [n / 2, 1], Part.codes), (".absmax", .u8, [blocks], .absmax),
                                                 (".nested_absmax", .f32, [nested], .nestedAbsmax), (".nested_quant_map", .f32, [256], .nestedMap),
                                                 (".quant_map", .f32, [16], .map), (".quant_state.bitsandbytes__nf4", .u8, [stateBytes], .state)] {
                plan.append(.init(name: t.name + suffix, dtype: dtype, shape: shape)); parts.append((i, part))
            }
            report.quantized += 1
        }
        let quantization: [String: Any] = [
            "quant_method": "bitsandbytes", "load_in_4bit": true, "load_in_8bit": false, "bnb_4bit_quant_type": "nf4",
            "bnb_4bit_use_double_quant": true, "bnb_4bit_compute_dtype": torchDtype, "bnb_4bit_quant_storage": "uint8",
        ]
        var current: (index: Int, tensor: NF4.Tensor)?
        func floats(_ v: [Float]) -> [UInt8] { v.withUnsafeBytes { Array($0) } }
        try HFDirectoryWriter.write(dir, overwrite: overwrite, tensors: plan, maxShardBytes: maxShardBytes,
                                    sideFiles: try ModelMerge.sideFiles(base: base, torchDtype: torchDtype,
                                                                        extraConfig: ["quantization_config": quantization])) { k in
            let (i, part) = parts[k]
            let (name, raw) = tensors[i]
            // Streaming: once a tensor's values are read, its checkpoint pages leave the resident set.
            defer { raw.releaseResidentPages() }
            if case .whole = part { return ModelMerge.encoded(try ModelMerge.hfValues(name, raw), as: plan[k].dtype.ggmlType!) }
            if current?.index != i {
                let values = try ModelMerge.hfValues(name, raw)
                current = (i, values.withUnsafeBufferPointer {
                    NF4.quantize($0.baseAddress!, count: values.count) { blocks, body in   // on all of this process's cores
                        Parallel.ranges(blocks, minimumPerWorker: 1024) { _, range in body(range) }
                    }
                })
            }
            let q = current!.tensor
            switch part {
            case .codes: return q.codes
            case .absmax: return q.quantizedAbsmax
            case .nestedAbsmax: return floats(q.nestedAbsmax)
            case .nestedMap: return floats(NF4.dynamicMap)
            case .map: return floats(NF4.codebook)
            case .state, .whole: return quantState(shape: raw.shape, dtype: torchDtype, offset: q.offset)
            }
        }
        return report
    }
}
