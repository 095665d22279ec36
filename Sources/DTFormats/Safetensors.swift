// safetensors reader and writer (huggingface/safetensors). Layout:
//
//   u64 N (little-endian header length)   N bytes of JSON   raw little-endian row-major tensor data
//   JSON: { name: {"dtype": "F32"|"F16"|"BF16"|…, "shape": [..], "data_offsets": [begin, end]}, "__metadata__": {str: str} }
//   offsets are relative to the end of the header; tensors must not overlap or run past the file.
//
// Sharded models list their files in model.safetensors.index.json ("weight_map": name → file).
import Foundation

public enum SafetensorsDType: String, Sendable {
    case f32 = "F32", f16 = "F16", bf16 = "BF16", i8 = "I8", u8 = "U8", i32 = "I32", i64 = "I64", f64 = "F64", i16 = "I16", bool = "BOOL"

    public var size: Int {
        switch self {
        case .f32, .i32: 4
        case .f16, .bf16, .i16: 2
        case .i8, .u8, .bool: 1
        case .i64, .f64: 8
        }
    }

    public var ggmlType: GGMLType? {
        switch self {
        case .f32: .f32
        case .f16: .f16
        case .bf16: .bf16
        default: nil
        }
    }
}

public struct SafetensorsTensor: Sendable {
    public var name: String
    public var dtype: SafetensorsDType
    /// Row-major shape, outermost first.
    public var shape: [Int]
    public var fileOffset: Int
    public var byteCount: Int
    public var elementCount: Int { shape.reduce(1, *) }
}

public final class SafetensorsFile {
    public let path: String
    public let mapped: MappedFile
    public let tensors: [String: SafetensorsTensor]
    public let metadata: [String: String]

    public init(path: String) throws {
        mapped = try MappedFile(path: path)
        self.path = path
        var r = ByteReader(file: path, bytes: mapped.bytes)
        let headerLength = try r.read(UInt64.self, "header length")
        guard headerLength <= UInt64(r.remaining), headerLength <= 100_000_000 else {
            throw FormatError.at(path, offset: 0, "header length \(headerLength) exceeds the file size \(mapped.bytes.count) (or the 100 MB limit)")
        }
        let headerBytes = try r.readBytes(Int(headerLength), "header")
        let dataStart = 8 + Int(headerLength)
        let dataSize = mapped.bytes.count - dataStart
        let json: Any
        do {
            json = try JSONSerialization.jsonObject(with: Data(headerBytes))
        } catch {
            throw FormatError.at(path, offset: 8, "header is not valid JSON: \(error.localizedDescription)")
        }
        guard let header = json as? [String: Any] else {
            throw FormatError.at(path, offset: 8, "expected the header to be a JSON object")
        }
        var tensors: [String: SafetensorsTensor] = [:]
        var metadata: [String: String] = [:]
        for (name, value) in header {
            if name == "__metadata__" {
                guard let dict = value as? [String: Any] else {
                    throw FormatError.key(path, name, "expected an object of strings")
                }
                for (k, v) in dict {
                    guard let s = v as? String else { throw FormatError.key(path, "__metadata__.\(k)", "expected a string") }
                    metadata[k] = s
                }
                continue
            }
            guard let entry = value as? [String: Any],
                  let dtypeName = entry["dtype"] as? String,
                  let shapeAny = entry["shape"] as? [Any],
                  let offsetsAny = entry["data_offsets"] as? [Any], offsetsAny.count == 2 else {
                throw FormatError.key(path, name, "expected {\"dtype\", \"shape\", \"data_offsets\": [begin, end]}")
            }
            guard let dtype = SafetensorsDType(rawValue: dtypeName) else {
                throw FormatError.key(path, name, "unsupported dtype '\(dtypeName)'")
            }
            let shape = try shapeAny.map { item -> Int in
                guard let n = (item as? NSNumber)?.intValue, n >= 0, n < 1 << 40 else {
                    throw FormatError.key(path, name, "shape entries must be non-negative integers")
                }
                return n
            }
            let offsets = try offsetsAny.map { item -> Int in
                guard let n = (item as? NSNumber)?.int64Value, n >= 0 else {
                    throw FormatError.key(path, name, "data_offsets must be non-negative integers")
                }
                return Int(n)
            }
            var elements = 1
            for d in shape {
                let (p, o) = elements.multipliedReportingOverflow(by: d)
                guard !o else { throw FormatError.key(path, name, "element count overflows") }
                elements = p
            }
            let (begin, end) = (offsets[0], offsets[1])
            guard begin <= end, end <= dataSize else {
                throw FormatError.key(path, name, "data_offsets [\(begin), \(end)] are outside the \(dataSize) data bytes")
            }
            guard end - begin == elements * dtype.size else {
                throw FormatError.key(path, name, "\(dtypeName) \(shape) needs \(elements * dtype.size) bytes, data_offsets give \(end - begin)")
            }
            tensors[name] = SafetensorsTensor(name: name, dtype: dtype, shape: shape,
                                              fileOffset: dataStart + begin, byteCount: end - begin)
        }
        let sorted = tensors.values.sorted { $0.fileOffset < $1.fileOffset }
        for (a, b) in zip(sorted, sorted.dropFirst()) where a.fileOffset + a.byteCount > b.fileOffset {
            throw FormatError.key(path, b.name, "data overlaps tensor '\(a.name)'")
        }
        self.tensors = tensors
        self.metadata = metadata
    }

    public func data(of tensor: SafetensorsTensor) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: mapped.bytes[tensor.fileOffset..<(tensor.fileOffset + tensor.byteCount)])
    }

    /// Reads a tensor as fp32 (F32, F16, BF16).
    public func floats(_ name: String) throws -> [Float] {
        guard let t = tensors[name] else { throw FormatError.key(path, name, "tensor not found") }
        guard let type = t.dtype.ggmlType else { throw FormatError.key(path, name, "expected F32/F16/BF16, found \(t.dtype.rawValue)") }
        var out = [Float](repeating: 0, count: t.elementCount)
        out.withUnsafeMutableBufferPointer { Dequantize.run(type, data(of: t).baseAddress!, $0.baseAddress!, count: t.elementCount) }
        return out
    }
}

/// Writes fp32 tensors to a safetensors file (row-major; `__metadata__` as given).
public enum SafetensorsWriter {
    public struct Entry {
        public var name: String
        public var shape: [Int]
        public var values: [Float]
        public init(name: String, shape: [Int], values: [Float]) {
            precondition(shape.reduce(1, *) == values.count, "\(name): shape \(shape) vs \(values.count) values")
            self.name = name; self.shape = shape; self.values = values
        }
    }

    public static func encode(_ entries: [Entry], metadata: [String: String] = [:]) -> Data {
        var data = Data(header(entries.map { ($0.name, .f32, $0.shape) }, metadata: metadata))
        for e in entries { e.values.withUnsafeBytes { data.append(contentsOf: $0) } }
        return data
    }

    /// The length prefix and JSON header of a file holding `tensors` back to back in this order.
    public static func header(_ tensors: [(name: String, dtype: SafetensorsDType, shape: [Int])], metadata: [String: String]) -> [UInt8] {
        var header = "{"
        var parts: [String] = []
        if !metadata.isEmpty {
            let fields = metadata.keys.sorted().map { "\(jsonString($0)):\(jsonString(metadata[$0]!))" }
            parts.append("\"__metadata__\":{\(fields.joined(separator: ","))}")
        }
        var offset = 0
        for t in tensors {
            let size = t.shape.reduce(1, *) * t.dtype.size
            parts.append("\(jsonString(t.name)):{\"dtype\":\"\(t.dtype.rawValue)\",\"shape\":[\(t.shape.map(String.init).joined(separator: ","))],\"data_offsets\":[\(offset),\(offset + size)]}")
            offset += size
        }
        header += parts.joined(separator: ",") + "}"
        while (header.utf8.count + 8) % 8 != 0 { header += " " }
        var n = UInt64(header.utf8.count).littleEndian
        return withUnsafeBytes(of: &n) { Array($0) } + Array(header.utf8)
    }

    /// A JSON string literal for `s` (quotes, backslashes and control characters escaped).
    public static func jsonString(_ s: String) -> String {
        var out = "\""
        for scalar in s.unicodeScalars {
            switch scalar {
            case "\"": out += "\\\""
            case "\\": out += "\\\\"
            case "\n": out += "\\n"
            default:
                if scalar.value < 0x20 { out += String(format: "\\u%04x", scalar.value) } else { out.unicodeScalars.append(scalar) }
            }
        }
        return out + "\""
    }
}
