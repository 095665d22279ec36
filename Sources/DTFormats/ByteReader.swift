// A bounds-checked little-endian cursor over a byte buffer. Every read that would run past the end throws
// a FormatError naming the file and offset instead of trapping.
import Foundation

public struct ByteReader {
    public let file: String
    public let bytes: UnsafeRawBufferPointer
    public private(set) var offset: Int

    public init(file: String, bytes: UnsafeRawBufferPointer, offset: Int = 0) {
        self.file = file
        self.bytes = bytes
        self.offset = offset
    }

    public var remaining: Int { bytes.count - offset }

    public func error(_ message: String, at position: Int? = nil) -> FormatError {
        .at(file, offset: position ?? offset, message)
    }

    mutating func need(_ count: Int, _ what: String) throws {
        guard count >= 0, count <= remaining else {
            throw error("expected \(what) (\(count) bytes) but the file ends after \(max(remaining, 0)) bytes (truncated?)")
        }
    }

    public mutating func read<T: FixedWidthInteger>(_ type: T.Type, _ what: String) throws -> T {
        try need(MemoryLayout<T>.size, what)
        let value = bytes.loadUnaligned(fromByteOffset: offset, as: T.self)
        offset += MemoryLayout<T>.size
        return T(littleEndian: value)
    }

    public mutating func readFloat(_ what: String) throws -> Float {
        Float(bitPattern: try read(UInt32.self, what))
    }

    public mutating func readDouble(_ what: String) throws -> Double {
        Double(bitPattern: try read(UInt64.self, what))
    }

    /// Reads `count` raw bytes.
    public mutating func readBytes(_ count: Int, _ what: String) throws -> UnsafeRawBufferPointer {
        try need(count, what)
        let slice = UnsafeRawBufferPointer(rebasing: bytes[offset..<(offset + count)])
        offset += count
        return slice
    }

    public mutating func seek(to position: Int) throws {
        guard position >= 0, position <= bytes.count else {
            throw error("offset \(position) is outside the file (size \(bytes.count))")
        }
        offset = position
    }
}
