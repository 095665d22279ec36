// Each supported ggml type dequantizes bit-identically to the gguf Python package (fixtures made by
// scripts/make_fixtures.py), and safetensors tensors load exactly as the safetensors package wrote them.
import DTFormats
import Foundation
import XCTest

final class QuantizationTests: XCTestCase {
    func fixture(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/\(name)", ofType: nil), "fixture \(name) missing: run scripts/make_fixtures.py")
    }

    /// Invariant: dequantize(type, blocks) == gguf.quants.dequantize bit for bit, for every supported type.
    func testDequantizationIsBitIdenticalToGGUFPy() throws {
        let g = try GGUFFile(path: try fixture("quant_blocks.gguf.bin"))
        let expected = try SafetensorsFile(path: try fixture("quant_expected.safetensors"))
        let types: [(String, GGMLType)] = [("f32", .f32), ("f16", .f16), ("bf16", .bf16), ("q8_0", .q8_0), ("q4_0", .q4_0),
                                           ("q4_1", .q4_1), ("q4_k", .q4_K), ("q5_k", .q5_K), ("q6_k", .q6_K)]
        for (name, type) in types {
            let info = try XCTUnwrap(g.tensor(name), name)
            XCTAssertEqual(info.type, type, name)
            XCTAssertEqual(info.dims, [512, 3], name)
            var out = [Float](repeating: .nan, count: info.elementCount)
            out.withUnsafeMutableBufferPointer { Dequantize.run(type, g.data(of: info).baseAddress!, $0.baseAddress!, count: info.elementCount) }
            let want = try expected.floats(name)
            XCTAssertEqual(want.count, out.count, name)
            let mismatches = zip(out, want).filter { $0.bitPattern != $1.bitPattern }.count
            XCTAssertEqual(mismatches, 0, "\(name): \(mismatches) values differ from gguf-py")
            XCTAssertGreaterThan(Set(want).count, 8, "\(name): fixture must not be trivial")
        }
    }

    /// Invariant: F32/F16/BF16 safetensors load to the values the reference package wrote, with metadata.
    func testSafetensorsMatchesTheReferencePackage() throws {
        let file = try SafetensorsFile(path: try fixture("mixed.safetensors"))
        let expected = try SafetensorsFile(path: try fixture("mixed_expected.safetensors"))
        XCTAssertEqual(file.metadata["format"], "pt")
        for (name, dtype, shape) in [("a_f32", SafetensorsDType.f32, [2, 3]), ("b_f16", .f16, [4, 5]), ("c_bf16", .bf16, [3, 7])] {
            let t = try XCTUnwrap(file.tensors[name])
            XCTAssertEqual(t.dtype, dtype); XCTAssertEqual(t.shape, shape)
            XCTAssertEqual(try file.floats(name).map(\.bitPattern), try expected.floats(name).map(\.bitPattern), name)
        }
    }

    /// Invariant: what SafetensorsWriter writes reads back identically (the adapter files depend on it).
    func testSafetensorsWriterRoundTrips() throws {
        let values: [Float] = (0..<12).map { Float($0) * 0.25 - 1 }
        let data = SafetensorsWriter.encode([.init(name: "w", shape: [3, 4], values: values)], metadata: ["format": "pt"])
        let path = NSTemporaryDirectory() + "rt-\(UUID().uuidString).safetensors"
        try data.write(to: URL(fileURLWithPath: path))
        let f = try SafetensorsFile(path: path)
        XCTAssertEqual(try f.floats("w"), values)
        XCTAssertEqual(f.tensors["w"]?.shape, [3, 4])
        XCTAssertEqual(f.metadata, ["format": "pt"])
    }

    func writeSafetensors(header: String, data: [UInt8]) -> String {
        var bytes: [UInt8] = []
        withUnsafeBytes(of: UInt64(header.utf8.count).littleEndian) { bytes += $0 }
        bytes += Array(header.utf8) + data
        let path = NSTemporaryDirectory() + "bad-\(UUID().uuidString).safetensors"
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }

    /// Invariant: bad safetensors headers are refused with the tensor named: out of range, overlapping,
    /// size not matching dtype × shape, malformed JSON, oversized header length.
    func testBadSafetensorsHeadersAreRefused() {
        let cases: [(String, [UInt8], String)] = [
            (#"{"w":{"dtype":"F32","shape":[2],"data_offsets":[0,16]}}"#, [UInt8](repeating: 0, count: 8), "outside"),
            (#"{"w":{"dtype":"F32","shape":[3],"data_offsets":[0,8]}}"#, [UInt8](repeating: 0, count: 8), "needs 12 bytes"),
            (#"{"a":{"dtype":"F32","shape":[2],"data_offsets":[0,8]},"b":{"dtype":"F32","shape":[2],"data_offsets":[4,12]}}"#,
             [UInt8](repeating: 0, count: 12), "overlaps"),
            (#"{"w":{"dtype":"Q9","shape":[2],"data_offsets":[0,8]}}"#, [UInt8](repeating: 0, count: 8), "unsupported dtype"),
            (#"{"w": [1, 2"#, [], "not valid JSON"),
        ]
        for (header, data, fragment) in cases {
            let path = writeSafetensors(header: header, data: data)
            XCTAssertThrowsError(try SafetensorsFile(path: path)) { e in
                XCTAssertTrue("\(e)".contains(fragment) && "\(e)".contains(path), "'\(e)' lacks '\(fragment)'")
            }
        }
        var huge: [UInt8] = []
        withUnsafeBytes(of: UInt64(1 << 50).littleEndian) { huge += $0 }
        let path = NSTemporaryDirectory() + "huge-\(UUID().uuidString).safetensors"
        FileManager.default.createFile(atPath: path, contents: Data(huge))
        XCTAssertThrowsError(try SafetensorsFile(path: path)) { XCTAssertTrue("\($0)".contains("header length")) }
    }
}
