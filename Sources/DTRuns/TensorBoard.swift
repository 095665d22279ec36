// TensorBoard event files (`tensorboard --logdir runs`), written by rank 0 next to metrics.jsonl.
// Format: a TFRecord stream of `Event` protobufs. Each record is
//   u64 length (LE) · u32 masked CRC-32C(length bytes) · payload · u32 masked CRC-32C(payload)
// with mask(c) = ((c >> 15) | (c << 17)) + 0xa282ead8. The first event carries file_version
// "brain.Event:2"; then one Event per scalar: wall_time (1, double), step (2, varint),
// summary (5) → Summary.value (1) → Value { tag (1), simple_value (2, float) }. proto3 omits a zero
// wall_time/step; oneof members (file_version, summary, simple_value) are written even when zero.
import Foundation

public enum TensorBoardEvents {
    /// CRC-32C (Castagnoli, reflected polynomial 0x82F63B78).
    static let table: [UInt32] = (0..<256).map { n in
        var c = UInt32(n)
        for _ in 0..<8 { c = c & 1 != 0 ? (c >> 1) ^ 0x82F6_3B78 : c >> 1 }
        return c
    }

    public static func crc32c(_ bytes: [UInt8]) -> UInt32 {
        var c: UInt32 = 0xFFFF_FFFF
        for b in bytes { c = table[Int((c ^ UInt32(b)) & 0xFF)] ^ (c >> 8) }
        return c ^ 0xFFFF_FFFF
    }

    static func masked(_ crc: UInt32) -> UInt32 { ((crc >> 15) | (crc << 17)) &+ 0xA282_EAD8 }

    /// One TFRecord around `payload`.
    public static func record(_ payload: [UInt8]) -> [UInt8] {
        let length = littleEndian(UInt64(payload.count))
        return length + littleEndian(masked(crc32c(length))) + payload + littleEndian(masked(crc32c(payload)))
    }

    /// The first event of a file: its version and the writer's name.
    public static func versionEvent(wallTime: Double, writer: String) -> [UInt8] {
        var e = Protobuf()
        e.double(1, wallTime)
        e.bytes(3, Array("brain.Event:2".utf8))
        var source = Protobuf()
        source.bytes(1, Array(writer.utf8))
        e.bytes(10, source.out)
        return e.out
    }

    /// An event with one scalar summary value.
    public static func scalarEvent(wallTime: Double, step: Int, tag: String, value: Float) -> [UInt8] {
        var v = Protobuf()
        v.bytes(1, Array(tag.utf8))
        v.float(2, value)
        var summary = Protobuf()
        summary.bytes(1, v.out)
        var e = Protobuf()
        e.double(1, wallTime)
        if step != 0 { e.varint(2, UInt64(bitPattern: Int64(step))) }
        e.bytes(5, summary.out)
        return e.out
    }

    static func littleEndian<T: FixedWidthInteger>(_ v: T) -> [UInt8] { withUnsafeBytes(of: v.littleEndian, Array.init) }

    /// The few protobuf encodings events need (fields in increasing number, as protobuf writes them).
    struct Protobuf {
        var out: [UInt8] = []
        mutating func raw(_ v: UInt64) {
            var v = v
            while v >= 0x80 { out.append(UInt8(v & 0x7F) | 0x80); v >>= 7 }
            out.append(UInt8(v))
        }
        mutating func varint(_ field: Int, _ v: UInt64) { raw(UInt64(field << 3)); raw(v) }
        mutating func double(_ field: Int, _ v: Double) {
            guard v != 0 else { return }
            raw(UInt64(field << 3 | 1)); out += littleEndian(v.bitPattern)
        }
        mutating func float(_ field: Int, _ v: Float) { raw(UInt64(field << 3 | 5)); out += littleEndian(v.bitPattern) }
        mutating func bytes(_ field: Int, _ b: [UInt8]) { raw(UInt64(field << 3 | 2)); raw(UInt64(b.count)); out += b }
    }
}

/// Appends scalar events to `DIR/events.out.tfevents.<seconds>.<host>.dtrain` (a new file per run or resume,
/// as TensorBoard expects). Write failures are reported once and never stop training.
final class TensorBoardWriter {
    private var handle: FileHandle?
    let path: String

    init?(directory: String, now: Date = Date()) {
        let host = ProcessInfo.processInfo.hostName.split(separator: ".").first.map(String.init) ?? "localhost"
        path = (directory as NSString).appendingPathComponent(String(format: "events.out.tfevents.%010d.%@.dtrain",
                                                                     Int(now.timeIntervalSince1970), host))
        guard FileManager.default.createFile(atPath: path, contents: nil), let h = FileHandle(forWritingAtPath: path) else { return nil }
        handle = h
        write(TensorBoardEvents.versionEvent(wallTime: now.timeIntervalSince1970, writer: "dtrain"))
    }

    func scalars(step: Int, _ values: [(String, Double)], now: Date = Date()) {
        for (tag, value) in values {
            write(TensorBoardEvents.scalarEvent(wallTime: now.timeIntervalSince1970, step: step, tag: tag, value: Float(value)))
        }
    }

    private func write(_ event: [UInt8]) {
        guard let handle else { return }
        do { try handle.write(contentsOf: TensorBoardEvents.record(event)) } catch {
            Console.error("warning: TensorBoard events not written to \(path): \(error.localizedDescription)")
            self.handle = nil
        }
    }

    deinit { try? handle?.close() }
}
