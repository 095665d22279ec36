// GGUF reader (ggml docs/gguf.md, gguf.h). Layout, little-endian:
//
//   u32 magic "GGUF"   u32 version (2 or 3)   u64 tensor_count   u64 kv_count
//   kv_count × { string key; u32 value_type; value }
//   tensor_count × { string name; u32 n_dims (≤ 4); u64 ne[n_dims] (innermost first); u32 ggml_type; u64 offset }
//   padding to general.alignment (default 32); tensor data (offsets relative to the data start)
//   string = u64 length + UTF-8 bytes, no NUL
//   value types: 0 u8 1 i8 2 u16 3 i16 4 u32 5 i32 6 f32 7 bool 8 string 9 array(u32 type, u64 n, items) 10 u64 11 i64 12 f64
//
// Tensor data stays in the read-only memory map. Every count is checked against the bytes that remain,
// so a hostile header cannot trigger a giant allocation.
import Foundation

public indirect enum GGUFValue: Equatable, Sendable {
    case uint(UInt64), int(Int64), float(Double), bool(Bool), string(String), array([GGUFValue])

    public var int: Int? {
        switch self {
        case .uint(let v): v <= UInt64(Int.max) ? Int(v) : nil
        case .int(let v): Int(v)
        default: nil
        }
    }
    public var double: Double? {
        switch self {
        case .float(let v): v
        case .uint(let v): Double(v)
        case .int(let v): Double(v)
        default: nil
        }
    }
    public var string: String? { if case .string(let s) = self { s } else { nil } }
    public var array: [GGUFValue]? { if case .array(let a) = self { a } else { nil } }
    public var bool: Bool? { if case .bool(let b) = self { b } else { nil } }
}

public struct GGUFTensorInfo: Sendable {
    public var name: String
    /// ggml order: dims[0] is the innermost (row length).
    public var dims: [Int]
    public var type: GGMLType
    /// Offset of the data from the start of the file.
    public var fileOffset: Int
    public var byteCount: Int
    public var elementCount: Int { dims.reduce(1, *) }
}

public final class GGUFFile {
    public let path: String
    public let version: UInt32
    public let metadata: [String: GGUFValue]
    /// Keys in file order (for inspect).
    public let metadataKeys: [String]
    /// Where each key-value record lies in the file: from the first byte of the key's length to the end of
    /// the value (what `GGUFMetadataEntry.copied` writes unchanged into another file).
    public let metadataRecords: [String: Range<Int>]
    public let tensors: [GGUFTensorInfo]
    public let tensorIndex: [String: Int]
    public let mapped: MappedFile

    public init(path: String) throws {
        mapped = try MappedFile(path: path)
        self.path = path
        var r = ByteReader(file: path, bytes: mapped.bytes)
        let magic = try r.read(UInt32.self, "magic 'GGUF'")
        guard magic == 0x4655_4747 else {
            throw FormatError.at(path, offset: 0, "expected magic 'GGUF' (47 47 55 46), found \(String(format: "%08x", magic.byteSwapped))")
        }
        version = try r.read(UInt32.self, "version")
        guard version == 2 || version == 3 else {
            throw FormatError.at(path, offset: 4, "expected GGUF version 2 or 3, found \(version)")
        }
        let tensorCount = try r.read(UInt64.self, "tensor count")
        let kvCount = try r.read(UInt64.self, "metadata count")
        // Each tensor entry needs ≥ 28 bytes and each kv ≥ 13: a count that cannot fit is corrupt.
        guard tensorCount <= UInt64(r.remaining / 28) else {
            throw FormatError.at(path, offset: 8, "tensor count \(tensorCount) cannot fit in a file of \(mapped.bytes.count) bytes")
        }
        guard kvCount <= UInt64(r.remaining / 13) else {
            throw FormatError.at(path, offset: 16, "metadata count \(kvCount) cannot fit in a file of \(mapped.bytes.count) bytes")
        }
        var metadata: [String: GGUFValue] = [:]
        var keys: [String] = []
        var records: [String: Range<Int>] = [:]
        for _ in 0..<Int(kvCount) {
            let keyOffset = r.offset
            let key = try Self.readString(&r, "metadata key")
            let type = try r.read(UInt32.self, "value type of '\(key)'")
            metadata[key] = try Self.readValue(&r, type: type, key: key, depth: 0)
            if metadata.count == keys.count { throw FormatError.at(path, offset: keyOffset, "duplicate metadata key '\(key)'") }
            keys.append(key)
            records[key] = keyOffset..<r.offset
        }
        let alignment = metadata["general.alignment"]?.int ?? 32
        guard alignment > 0, alignment <= 1 << 20, alignment % 8 == 0 || alignment == 1 || alignment == 4 else {
            throw FormatError.key(path, "general.alignment", "expected a small power of two, found \(alignment)")
        }
        var infos: [(GGUFTensorInfo, Int)] = []
        var index: [String: Int] = [:]
        for i in 0..<Int(tensorCount) {
            let at = r.offset
            let name = try Self.readString(&r, "tensor name")
            let nDims = try r.read(UInt32.self, "dimension count of '\(name)'")
            guard (1...4).contains(nDims) else {
                throw FormatError.at(path, offset: at, "tensor '\(name)': expected 1 to 4 dimensions, found \(nDims)")
            }
            var dims: [Int] = []
            var elements = 1
            for _ in 0..<Int(nDims) {
                let d = try r.read(UInt64.self, "dimension of '\(name)'")
                guard d > 0, d < 1 << 40 else {
                    throw FormatError.at(path, offset: r.offset - 8, "tensor '\(name)': dimension \(d) out of range")
                }
                let (product, overflow) = elements.multipliedReportingOverflow(by: Int(d))
                guard !overflow, product < 1 << 42 else {
                    throw FormatError.at(path, offset: r.offset - 8, "tensor '\(name)': element count overflows")
                }
                elements = product
                dims.append(Int(d))
            }
            let rawType = try r.read(UInt32.self, "type of '\(name)'")
            guard let type = GGMLType(rawValue: rawType) else {
                throw FormatError.at(path, offset: r.offset - 4, "tensor '\(name)': unknown ggml type \(rawType)")
            }
            guard dims[0] % type.blockSize == 0, let bytes = type.byteCount(elements: elements) else {
                throw FormatError.at(path, offset: at, "tensor '\(name)': row length \(dims[0]) is not a multiple of the \(type.name) block size \(type.blockSize)")
            }
            let offset = try r.read(UInt64.self, "data offset of '\(name)'")
            guard offset < UInt64(mapped.bytes.count), Int(offset) % alignment == 0 else {
                throw FormatError.at(path, offset: r.offset - 8, "tensor '\(name)': data offset \(offset) is out of range or not aligned to \(alignment)")
            }
            if index[name] != nil { throw FormatError.at(path, offset: at, "duplicate tensor name '\(name)'") }
            index[name] = i
            infos.append((GGUFTensorInfo(name: name, dims: dims, type: type, fileOffset: 0, byteCount: bytes), Int(offset)))
        }
        let dataStart = (r.offset + alignment - 1) / alignment * alignment
        var tensors: [GGUFTensorInfo] = []
        for (var info, relative) in infos {
            let (start, o1) = dataStart.addingReportingOverflow(relative)
            let (end, o2) = start.addingReportingOverflow(info.byteCount)
            guard !o1, !o2, end <= mapped.bytes.count else {
                throw FormatError.at(path, offset: dataStart + relative, "tensor '\(info.name)': \(info.byteCount) bytes of \(info.type.name) data run past the end of the file (size \(mapped.bytes.count); truncated?)")
            }
            info.fileOffset = start
            tensors.append(info)
        }
        // As safetensors: no two tensors may share bytes (a corrupt or hostile header could alias them).
        let byStart = tensors.sorted { $0.fileOffset < $1.fileOffset }
        for (a, b) in zip(byStart, byStart.dropFirst()) where a.fileOffset + a.byteCount > b.fileOffset {
            throw FormatError.at(path, offset: b.fileOffset, "tensor '\(b.name)': data overlaps tensor '\(a.name)' (bytes \(a.fileOffset)..<\(a.fileOffset + a.byteCount))")
        }
        self.metadata = metadata
        self.metadataKeys = keys
        self.metadataRecords = records
        self.tensors = tensors
        self.tensorIndex = index
    }

    public func tensor(_ name: String) -> GGUFTensorInfo? {
        tensorIndex[name].map { tensors[$0] }
    }

    /// The bytes of `key`'s whole record (key string, value type, value), valid while this file lives.
    public func rawRecord(_ key: String) -> UnsafeRawBufferPointer? {
        metadataRecords[key].map { UnsafeRawBufferPointer(rebasing: mapped.bytes[$0]) }
    }

    public func data(of info: GGUFTensorInfo) -> UnsafeRawBufferPointer {
        UnsafeRawBufferPointer(rebasing: mapped.bytes[info.fileOffset..<(info.fileOffset + info.byteCount)])
    }

    static func readString(_ r: inout ByteReader, _ what: String) throws -> String {
        let at = r.offset
        let length = try r.read(UInt64.self, "length of \(what)")
        guard length <= UInt64(r.remaining) else {
            throw r.error("\(what): string length \(length) exceeds the \(r.remaining) bytes left", at: at)
        }
        let raw = try r.readBytes(Int(length), what)
        guard let s = String(validating: raw, as: UTF8.self) else {
            throw r.error("\(what): expected UTF-8 text, found invalid bytes", at: at + 8)
        }
        return s
    }

    static func readValue(_ r: inout ByteReader, type: UInt32, key: String, depth: Int) throws -> GGUFValue {
        switch type {
        case 0: return .uint(UInt64(try r.read(UInt8.self, key)))
        case 1: return .int(Int64(try r.read(Int8.self, key)))
        case 2: return .uint(UInt64(try r.read(UInt16.self, key)))
        case 3: return .int(Int64(try r.read(Int16.self, key)))
        case 4: return .uint(UInt64(try r.read(UInt32.self, key)))
        case 5: return .int(Int64(try r.read(Int32.self, key)))
        case 6: return .float(Double(try r.readFloat(key)))
        case 7:
            let b = try r.read(UInt8.self, key)
            guard b <= 1 else { throw r.error("'\(key)': expected a bool (0 or 1), found \(b)", at: r.offset - 1) }
            return .bool(b == 1)
        case 8: return .string(try readString(&r, "value of '\(key)'"))
        case 9:
            guard depth < 4 else { throw r.error("'\(key)': arrays nested deeper than 4 levels") }
            let elementType = try r.read(UInt32.self, "array type of '\(key)'")
            let countAt = r.offset
            let count = try r.read(UInt64.self, "array length of '\(key)'")
            let minSize: UInt64 = [0: 1, 1: 1, 2: 2, 3: 2, 4: 4, 5: 4, 6: 4, 7: 1, 8: 8, 9: 12, 10: 8, 11: 8, 12: 8][elementType] ?? 1
            guard count <= UInt64(r.remaining) / minSize else {
                throw r.error("'\(key)': array of \(count) elements cannot fit in the \(r.remaining) bytes left", at: countAt)
            }
            var items: [GGUFValue] = []
            items.reserveCapacity(Int(count))
            for _ in 0..<Int(count) {
                items.append(try readValue(&r, type: elementType, key: key, depth: depth + 1))
            }
            return .array(items)
        case 10: return .uint(try r.read(UInt64.self, key))
        case 11: return .int(try r.read(Int64.self, key))
        case 12: return .float(try r.readDouble(key))
        default:
            throw r.error("'\(key)': unknown value type \(type) (expected 0…12)", at: r.offset - 4)
        }
    }
}
