// Streaming GGUF v3 writer, the inverse of GGUFFile (GGUF.swift has the layout). The header — metadata and
// tensor infos with offsets computed from the declared types and dims — is written first; then each tensor's
// bytes, in declared order, each padded to the alignment (the last one too), as gguf-py's GGUFWriter and
// llama.cpp's gguf_write do: llama.cpp refuses any other offsets. The file goes through AtomicFileWriter, so a
// failure at any point leaves no partial output and an existing file untouched.
//
// Metadata is either a typed value or a record copied byte for byte from another GGUF file (keeps exact value
// types and large arrays such as tokenizer.ggml.tokens without decoding them).

/// One GGUF metadata value with its exact on-disk type.
public enum GGUFMetadataValue: Equatable, Sendable {
    case u8(UInt8), i8(Int8), u16(UInt16), i16(Int16), u32(UInt32), i32(Int32), u64(UInt64), i64(Int64)
    case f32(Float), f64(Double), bool(Bool), string(String), array(GGUFArray)

    /// The GGUF value type id (0 u8 … 12 f64).
    public var typeID: UInt32 {
        switch self {
        case .u8: 0; case .i8: 1; case .u16: 2; case .i16: 3; case .u32: 4; case .i32: 5; case .f32: 6
        case .bool: 7; case .string: 8; case .array: 9; case .u64: 10; case .i64: 11; case .f64: 12
        }
    }
}

/// A GGUF array: one element type; `.array` nests arrays (each with its own element type).
public enum GGUFArray: Equatable, Sendable {
    case u8([UInt8]), i8([Int8]), u16([UInt16]), i16([Int16]), u32([UInt32]), i32([Int32]), u64([UInt64]), i64([Int64])
    case f32([Float]), f64([Double]), bool([Bool]), string([String]), array([GGUFArray])

    public var elementTypeID: UInt32 {
        switch self {
        case .u8: 0; case .i8: 1; case .u16: 2; case .i16: 3; case .u32: 4; case .i32: 5; case .f32: 6
        case .bool: 7; case .string: 8; case .array: 9; case .u64: 10; case .i64: 11; case .f64: 12
        }
    }

    public var count: Int {
        switch self {
        case .u8(let a): a.count; case .i8(let a): a.count; case .u16(let a): a.count; case .i16(let a): a.count
        case .u32(let a): a.count; case .i32(let a): a.count; case .u64(let a): a.count; case .i64(let a): a.count
        case .f32(let a): a.count; case .f64(let a): a.count; case .bool(let a): a.count; case .string(let a): a.count
        case .array(let a): a.count
        }
    }
}

public enum GGUFMetadataEntry {
    case value(String, GGUFMetadataValue)
    /// A whole record (key string + u32 type + value) as it lies in a source file; `owner` keeps `raw` valid
    /// (for a GGUFFile: the file itself). Checked to be one record for `key` before anything is written.
    case copied(key: String, raw: UnsafeRawBufferPointer, owner: AnyObject)

    public var key: String {
        switch self {
        case .value(let key, _): key
        case .copied(let key, _, _): key
        }
    }
}

extension GGUFFile {
    /// `key`'s record, to be written unchanged into another file.
    public func copiedEntry(_ key: String) -> GGUFMetadataEntry? {
        rawRecord(key).map { .copied(key: key, raw: $0, owner: self) }
    }
}

public struct GGUFTensorSpec: Equatable, Sendable {
    public var name: String
    /// ggml order: dims[0] is the innermost (row length).
    public var dims: [Int]
    public var type: GGMLType

    public init(name: String, dims: [Int], type: GGMLType) {
        self.name = name
        self.dims = dims
        self.type = type
    }

    public var elementCount: Int { dims.reduce(1, *) }
}

public final class GGUFWriter {
    /// llama.cpp refuses tensor names of GGML_MAX_NAME (64) bytes or more.
    public static let maxTensorNameBytes = 63

    public let path: String
    public let alignment: Int
    public let tensors: [GGUFTensorSpec]
    /// Data bytes of each tensor (without padding).
    public let byteCounts: [Int]
    /// File offset of each tensor's data.
    public let fileOffsets: [Int]

    private let file: AtomicFileWriter
    private var next = 0

    /// Validates everything, then writes the header to a temporary sibling of `path`. `alignment` must be a
    /// power of two; a `general.alignment` entry must be a u32 equal to it, and one is appended when
    /// `alignment` is not the default 32 and the metadata lacks it. Throws WriteError for duplicate keys or
    /// tensor names, malformed copied records, tensors GGUF readers would refuse, or an existing `path`
    /// without `overwrite`.
    public init(path: String, metadata: [GGUFMetadataEntry], tensors: [GGUFTensorSpec], alignment: Int = 32,
                overwrite: Bool) throws {
        precondition(alignment > 0 && alignment & (alignment - 1) == 0, "GGUF alignment \(alignment) must be a power of two")
        self.path = path
        self.alignment = alignment
        self.tensors = tensors
        var out = GGUFEncoder()
        out.u32(0x4655_4747)
        out.u32(3)
        out.u64(UInt64(tensors.count))
        let entries = try Self.checkedMetadata(metadata, alignment: alignment, path: path)
        out.u64(UInt64(entries.count))
        for entry in entries {
            switch entry {
            case .value(let key, let value):
                out.string(key)
                out.u32(value.typeID)
                out.value(value)
            case .copied(_, let raw, _):
                out.bytes += raw
            }
        }
        var names = Set<String>()
        var counts: [Int] = [], relative: [Int] = []
        var dataSize = 0
        for t in tensors {
            let bytes = try Self.checkedByteCount(t, path: path)
            guard names.insert(t.name).inserted else { throw WriteError(path: path, "duplicate tensor name '\(t.name)'") }
            out.string(t.name)
            out.u32(UInt32(t.dims.count))
            for d in t.dims { out.u64(UInt64(d)) }
            out.u32(t.type.rawValue)
            out.u64(UInt64(dataSize))
            counts.append(bytes)
            relative.append(dataSize)
            dataSize += (bytes + alignment - 1) / alignment * alignment
        }
        let dataStart = (out.bytes.count + alignment - 1) / alignment * alignment
        byteCounts = counts
        fileOffsets = relative.map { dataStart + $0 }
        file = try AtomicFileWriter(path: path, overwrite: overwrite)
        try out.bytes.withUnsafeBytes { try file.write($0) }
        try file.pad(to: alignment)
    }

    /// The next tensor's bytes: `name` must be the next declared tensor and `bytes` exactly its size.
    public func writeTensor(_ name: String, _ bytes: UnsafeRawBufferPointer) throws {
        guard next < tensors.count else {
            throw WriteError(path: path, "tensor '\(name)' written after all \(tensors.count) declared tensors")
        }
        let spec = tensors[next]
        guard name == spec.name else {
            throw WriteError(path: path, "expected tensor '\(spec.name)' (number \(next + 1) of \(tensors.count) in declared order), got '\(name)'")
        }
        guard bytes.count == byteCounts[next] else {
            throw WriteError(path: path, "tensor '\(name)' (\(spec.type.name) \(spec.dims)): expected \(byteCounts[next]) bytes, got \(bytes.count)")
        }
        precondition(file.offset == fileOffsets[next], "GGUF writer out of step at '\(name)'")
        try file.write(bytes)
        try file.pad(to: alignment)
        next += 1
    }

    /// Commits the file once every declared tensor has been written.
    public func finish() throws {
        guard next == tensors.count else {
            throw WriteError(path: path, "only \(next) of \(tensors.count) tensors were written; '\(tensors[next].name)' is next")
        }
        try file.commit()
    }

    /// Drops the output (also done when an unfinished writer is released).
    public func abandon() { file.abandon() }

    // MARK: validation

    static func checkedMetadata(_ metadata: [GGUFMetadataEntry], alignment: Int, path: String) throws -> [GGUFMetadataEntry] {
        var keys = Set<String>()
        var sawAlignment = false
        for entry in metadata {
            let key = entry.key
            guard !key.isEmpty else { throw WriteError(path: path, "metadata key must not be empty") }
            guard keys.insert(key).inserted else { throw WriteError(path: path, "duplicate metadata key '\(key)'") }
            var alignmentValue: String? = nil
            switch entry {
            case .value(_, let value):
                if key == "general.alignment" { alignmentValue = value == .u32(UInt32(alignment)) ? nil : "\(value)" }
            case .copied(_, let raw, _):
                let (type, value) = try decodeRecord(raw, key: key, path: path)
                if key == "general.alignment" && !(type == 4 && value.int == alignment) {
                    alignmentValue = "\(value) of value type \(type)"
                }
            }
            if key == "general.alignment" {
                sawAlignment = true
                if let found = alignmentValue {
                    throw WriteError(path: path, "metadata general.alignment is \(found), but the tensors are aligned to \(alignment) (expected u32 \(alignment))")
                }
            }
        }
        if !sawAlignment && alignment != 32 {
            return metadata + [.value("general.alignment", .u32(UInt32(alignment)))]
        }
        return metadata
    }

    /// Reads a copied record back; it must be exactly one record whose key is `key`.
    static func decodeRecord(_ raw: UnsafeRawBufferPointer, key: String, path: String) throws -> (UInt32, GGUFValue) {
        var r = ByteReader(file: "copied record '\(key)'", bytes: raw)
        do {
            let found = try GGUFFile.readString(&r, "metadata key")
            guard found == key else { throw r.error("expected key '\(key)', found '\(found)'", at: 0) }
            let type = try r.read(UInt32.self, "value type of '\(key)'")
            let value = try GGUFFile.readValue(&r, type: type, key: key, depth: 0)
            guard r.remaining == 0 else { throw r.error("\(r.remaining) bytes follow the value") }
            return (type, value)
        } catch let e as FormatError {
            throw WriteError(path: path, "copied metadata record '\(key)' is not one GGUF key-value record: \(e.location): \(e.message)")
        }
    }

    static func checkedByteCount(_ t: GGUFTensorSpec, path: String) throws -> Int {
        let what = "tensor '\(t.name)' (\(t.type.name) \(t.dims))"
        guard !t.name.isEmpty, t.name.utf8.count <= maxTensorNameBytes else {
            throw WriteError(path: path, "\(what): expected a name of 1 to \(maxTensorNameBytes) bytes (llama.cpp's limit), found \(t.name.utf8.count)")
        }
        guard (1...4).contains(t.dims.count), t.dims.allSatisfy({ $0 > 0 && $0 < 1 << 40 }) else {
            throw WriteError(path: path, "\(what): expected 1 to 4 positive dimensions")
        }
        guard t.dims[0] % t.type.blockSize == 0 else {
            throw WriteError(path: path, "\(what): row length \(t.dims[0]) is not a multiple of the \(t.type.name) block size \(t.type.blockSize)")
        }
        var elements = 1
        for d in t.dims {
            let (p, overflow) = elements.multipliedReportingOverflow(by: d)
            guard !overflow, p < 1 << 42 else { throw WriteError(path: path, "\(what): element count overflows") }
            elements = p
        }
        guard let bytes = t.type.byteCount(elements: elements) else {
            throw WriteError(path: path, "\(what): byte count overflows")
        }
        return bytes
    }
}

/// Little-endian GGUF encoding into a byte array (header and metadata; tensor data is written directly).
struct GGUFEncoder {
    var bytes: [UInt8] = []

    mutating func int<T: FixedWidthInteger>(_ v: T) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    mutating func u32(_ v: UInt32) { int(v) }
    mutating func u64(_ v: UInt64) { int(v) }
    mutating func string(_ s: String) {
        u64(UInt64(s.utf8.count))
        bytes += s.utf8
    }

    mutating func value(_ v: GGUFMetadataValue) {
        switch v {
        case .u8(let x): int(x)
        case .i8(let x): int(x)
        case .u16(let x): int(x)
        case .i16(let x): int(x)
        case .u32(let x): int(x)
        case .i32(let x): int(x)
        case .u64(let x): int(x)
        case .i64(let x): int(x)
        case .f32(let x): int(x.bitPattern)
        case .f64(let x): int(x.bitPattern)
        case .bool(let x): int(UInt8(x ? 1 : 0))
        case .string(let s): string(s)
        case .array(let a): array(a)
        }
    }

    /// u32 element type, u64 count, elements.
    mutating func array(_ a: GGUFArray) {
        u32(a.elementTypeID)
        u64(UInt64(a.count))
        switch a {
        case .u8(let xs): bytes += xs
        case .i8(let xs): for x in xs { int(x) }
        case .u16(let xs): for x in xs { int(x) }
        case .i16(let xs): for x in xs { int(x) }
        case .u32(let xs): for x in xs { int(x) }
        case .i32(let xs): for x in xs { int(x) }
        case .u64(let xs): for x in xs { int(x) }
        case .i64(let xs): for x in xs { int(x) }
        case .f32(let xs): for x in xs { int(x.bitPattern) }
        case .f64(let xs): for x in xs { int(x.bitPattern) }
        case .bool(let xs): for x in xs { int(UInt8(x ? 1 : 0)) }
        case .string(let xs): for s in xs { string(s) }
        case .array(let xs): for x in xs { array(x) }
        }
    }
}
