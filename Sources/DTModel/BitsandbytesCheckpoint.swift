// Pre-quantized bitsandbytes 4-bit checkpoints (Hugging Face directories saved by transformers with
// `load_in_4bit`): a projection weight W (out, in) is stored as
//   W                                     U8 [out·in/2, 1]  NF4 codes, two per byte, high nibble first
//   W.absmax                              U8 [out·in/64]    8-bit codes of (block absmax − offset)
//   W.nested_absmax                       F32 [⌈blocks/256⌉] scale of each group of 256 absmax codes
//   W.quant_map / W.nested_quant_map      F32 [16] / [256]  the NF4 codebook / the signed dynamic map
//   W.quant_state.bitsandbytes__nf4       U8 JSON {"quant_type", "blocksize", "shape", "nested_blocksize", "nested_offset", …}
// which is exactly dtrain's NF4.Tensor, so such a weight is used as it is (QLoRA) or dequantized (LoRA).
import DTFormats
import Foundation

/// A bitsandbytes NF4 weight as found in its checkpoint: the scales read, the codes left in the mapped file (a
/// sharded rank copies only its share of them).
public struct BitsandbytesWeight {
    /// The double-quantized block scales; `codes` empty.
    public var scales: NF4.Tensor
    /// The packed codes (count / 2 bytes) in the mapped file.
    public let codes: UnsafeRawBufferPointer
    let file: SafetensorsFile

    /// The whole weight, codes copied.
    public var tensor: NF4.Tensor {
        var t = scales
        t.codes = [UInt8](codes)
        return t
    }

    /// Drops the resident pages of the codes in the mapped file (once copied).
    func releaseResidentPages() { file.mapped.releaseResidentPages(of: codes) }
}

extension ModelSource {
    /// The NF4 + double-quantization weight `name` (rows, cols) of a bitsandbytes checkpoint, or nil if `name`
    /// is stored in an ordinary dtype.
    public func bitsandbytesNF4(_ name: String, rows: Int, cols: Int) throws -> BitsandbytesWeight? {
        guard gguf == nil else { return nil }
        if let fp4 = try safetensor("\(name).quant_state.bitsandbytes__fp4") {
            throw FormatError.key(fp4.file.path, fp4.tensor.name, "bitsandbytes FP4 weights are not supported (expected nf4)")
        }
        guard let state = try safetensor("\(name).quant_state.bitsandbytes__nf4") else { return nil }
        let file = state.file.path
        func fail(_ key: String, _ message: String) -> FormatError { FormatError.key(file, key, message) }
        let stateBytes = try bytes(state, name: state.tensor.name, count: nil)
        guard let json = (try? JSONSerialization.jsonObject(with: Data(stateBytes))) as? [String: Any] else {
            throw fail(state.tensor.name, "expected the bitsandbytes quant state as UTF-8 JSON bytes")
        }
        let n = rows * cols, blocks = n / NF4.blockSize
        guard json["quant_type"] as? String == "nf4", (json["blocksize"] as? NSNumber)?.intValue == NF4.blockSize else {
            throw fail(state.tensor.name, "expected quant_type nf4 with blocksize \(NF4.blockSize), found \(json["quant_type"] ?? "?") / \(json["blocksize"] ?? "?")")
        }
        guard (json["shape"] as? [NSNumber])?.map(\.intValue) == [rows, cols] else {
            throw fail(state.tensor.name, "expected shape [\(rows), \(cols)], found \(json["shape"] ?? "none")")
        }
        guard (json["nested_blocksize"] as? NSNumber)?.intValue == NF4.nestedBlockSize, let offset = json["nested_offset"] as? NSNumber else {
            throw fail(state.tensor.name, "expected double quantization (bnb_4bit_use_double_quant: true, nested_blocksize \(NF4.nestedBlockSize)); "
                       + "re-save the model with it, or dequantize it to F16/F32")
        }
        guard let codes = try safetensor(name), let absmax = try safetensor("\(name).absmax"),
              let nested = try safetensor("\(name).nested_absmax"), let map = try safetensor("\(name).quant_map"),
              let nestedMap = try safetensor("\(name).nested_quant_map") else {
            throw fail(name, "incomplete bitsandbytes weight: expected the codes, .absmax, .nested_absmax, .quant_map and .nested_quant_map")
        }
        let codebook = try floats(map, count: 16), dynamic = try floats(nestedMap, count: 256)
        guard zip(codebook, NF4.codebook).allSatisfy({ abs($0 - $1) <= 1e-6 }) else {
            throw fail(map.tensor.name, "expected the NF4 codebook, found \(codebook)")
        }
        guard zip(dynamic, NF4.dynamicMap).allSatisfy({ abs($0 - $1) <= 1e-6 }) else {
            throw fail(nestedMap.tensor.name, "expected bitsandbytes' signed dynamic map")
        }
        guard codes.tensor.dtype == .u8, codes.tensor.elementCount == n / 2 else {
            throw FormatError.key(codes.file.path, name, "expected U8 with \(n / 2) elements, found \(codes.tensor.dtype.rawValue) \(codes.tensor.shape)")
        }
        let scales = NF4.Tensor(count: n, codes: [], quantizedAbsmax: try bytes(absmax, name: absmax.tensor.name, count: blocks),
                                nestedAbsmax: try floats(nested, count: (blocks + NF4.nestedBlockSize - 1) / NF4.nestedBlockSize),
                                offset: offset.floatValue)
        return BitsandbytesWeight(scales: scales, codes: codes.file.data(of: codes.tensor), file: codes.file)
    }

    private func bytes(_ t: (file: SafetensorsFile, tensor: SafetensorsTensor), name: String, count: Int?) throws -> [UInt8] {
        guard t.tensor.dtype == .u8, count == nil || t.tensor.elementCount == count! else {
            throw FormatError.key(t.file.path, name, "expected U8 with \(count.map(String.init) ?? "any number of") elements, found \(t.tensor.dtype.rawValue) \(t.tensor.shape)")
        }
        return [UInt8](t.file.data(of: t.tensor))
    }

    private func floats(_ t: (file: SafetensorsFile, tensor: SafetensorsTensor), count: Int) throws -> [Float] {
        guard t.tensor.elementCount == count else {
            throw FormatError.key(t.file.path, t.tensor.name, "expected \(count) values, found shape \(t.tensor.shape)")
        }
        return try t.file.floats(t.tensor.name)
    }
}
