// TensorBoard event files: the writer's bytes equal those TensorBoard's own protobuf classes and record
// writer produce (fixture by scripts/make_tensorboard_fixtures.py), and a training run's event file is a
// valid record stream holding every logged step.
import DTRuns
import Foundation
import TestSupport
import XCTest

/// Records of a TFRecord file, checking each length and payload CRC; fails the test on a broken frame.
func tensorBoardRecords(_ path: String, file: StaticString = #filePath, line: UInt = #line) throws -> [[UInt8]] {
    let bytes = [UInt8](try Data(contentsOf: URL(fileURLWithPath: path)))
    var records: [[UInt8]] = [], i = 0
    func u32(_ at: Int) -> UInt32 { (0..<4).reduce(0) { $0 | UInt32(bytes[at + $1]) << (8 * $1) } }
    func masked(_ c: UInt32) -> UInt32 { ((c >> 15) | (c << 17)) &+ 0xA282_EAD8 }
    while i < bytes.count {
        guard i + 12 <= bytes.count else { XCTFail("truncated header at \(i)", file: file, line: line); break }
        let length = Int((0..<8).reduce(UInt64(0)) { $0 | UInt64(bytes[i + $1]) << (8 * $1) })
        XCTAssertEqual(u32(i + 8), masked(TensorBoardEvents.crc32c(Array(bytes[i..<(i + 8)]))), "length CRC at \(i)", file: file, line: line)
        guard i + 12 + length + 4 <= bytes.count else { XCTFail("truncated record at \(i)", file: file, line: line); break }
        let payload = Array(bytes[(i + 12)..<(i + 12 + length)])
        XCTAssertEqual(u32(i + 12 + length), masked(TensorBoardEvents.crc32c(payload)), "payload CRC at \(i)", file: file, line: line)
        records.append(payload)
        i += 16 + length
    }
    return records
}

/// Fields of a protobuf message as (number, payload of length-delimited fields or nil).
func protobufFields(_ m: ArraySlice<UInt8>) -> [(Int, ArraySlice<UInt8>?)] {
    var fields: [(Int, ArraySlice<UInt8>?)] = []
    var i = m.startIndex
    func varint() -> UInt64 {
        var v: UInt64 = 0, shift: UInt64 = 0
        while i < m.endIndex { let b = m[i]; i += 1; v |= UInt64(b & 0x7F) << shift; shift += 7; if b < 0x80 { break } }
        return v
    }
    while i < m.endIndex {
        let key = varint()
        switch key & 7 {
        case 0: _ = varint(); fields.append((Int(key >> 3), nil))
        case 1: i += 8; fields.append((Int(key >> 3), nil))
        case 5: i += 4; fields.append((Int(key >> 3), nil))
        case 2:
            let n = Int(varint())
            fields.append((Int(key >> 3), m[i..<min(i + n, m.endIndex)])); i += n
        default: return fields
        }
    }
    return fields
}

/// Tags of the scalar values in an event: Event.summary (5) → Summary.value (1) → Value.tag (1).
func scalarTags(_ event: [UInt8]) -> [String] {
    protobufFields(event[...]).filter { $0.0 == 5 }.compactMap(\.1).flatMap { summary in
        protobufFields(summary).filter { $0.0 == 1 }.compactMap(\.1).compactMap { value in
            protobufFields(value).first { $0.0 == 1 }?.1.map { String(decoding: $0, as: UTF8.self) }
        }
    }
}

final class TensorBoardTests: XCTestCase {
    /// Invariant: CRC-32C is the Castagnoli checksum (standard check value of "123456789").
    func testCRC32CCheckValue() {
        XCTAssertEqual(TensorBoardEvents.crc32c(Array("123456789".utf8)), 0xE306_9283)
    }

    /// Invariant: the version event and scalar events are byte-identical to TensorBoard's own encoding,
    /// including proto3's omission of step 0 and the explicit 0.0 scalar.
    func testEventsEqualTensorBoardsEncoding() throws {
        let dir = TestPaths.repoRoot + "/Tests/Fixtures/tensorboard"
        let golden = try Data(contentsOf: URL(fileURLWithPath: dir + "/golden.tfevents"))
        let spec = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/golden.json"))) as? [String: Any])
        var bytes = TensorBoardEvents.record(TensorBoardEvents.versionEvent(wallTime: spec["version_wall_time"] as! Double,
                                                                            writer: spec["writer"] as! String))
        for case let s as [Any] in spec["scalars"] as! [Any] {
            bytes += TensorBoardEvents.record(TensorBoardEvents.scalarEvent(wallTime: s[0] as! Double, step: s[1] as! Int,
                                                                            tag: s[2] as! String, value: Float(s[3] as! Double)))
        }
        XCTAssertEqual(bytes, [UInt8](golden))
    }
}
