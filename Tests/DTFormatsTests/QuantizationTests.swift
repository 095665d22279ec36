// Each supported ggml type dequantizes bit-identically to the gguf Python package (fixtures made by
// scripts/make_model_fixtures.py) and encodes bit-identically to it (scripts/make_quant_fixtures.py); encoding then
// decoding stays within each format's error bound; safetensors tensors load exactly as the safetensors package
// wrote them.
import DTFormats
import Foundation
import TestSupport
import XCTest

final class QuantizationTests: XCTestCase {
    func fixture(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/\(name)", ofType: nil), "fixture \(name) missing: run scripts/make_model_fixtures.py and scripts/make_quant_fixtures.py")
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

    /// Invariant: Quantize.run(type, x) == gguf.quants.quantize(x, type) byte for byte for F16, BF16, Q8_0, Q4_0
    /// and Q4_1, on random blocks and on the edge cases (zero, constant, one huge value, one-signed, subnormal,
    /// rounding ties, infinities and NaNs); a mismatch names its case.
    func testQuantizationIsBitIdenticalToGGUFPy() throws {
        let file = try SafetensorsFile(path: try fixture("quantize_cases.safetensors"))
        let input = try file.floats("input")
        let cases = try XCTUnwrap(JSONSerialization.jsonObject(with: Data(try XCTUnwrap(file.metadata["cases"]).utf8)) as? [[Any]])
        XCTAssertEqual(input.count % 32, 0)
        XCTAssertGreaterThan(cases.count, 10, "fixture must hold the edge cases")
        for (name, type) in [("f16", GGMLType.f16), ("bf16", .bf16), ("q8_0", .q8_0), ("q4_0", .q4_0), ("q4_1", .q4_1)] {
            let t = try XCTUnwrap(file.tensors[name], name)
            let expected = [UInt8](file.data(of: t))
            XCTAssertEqual(expected.count, type.byteCount(elements: input.count), name)
            var got = [UInt8](repeating: 0xAA, count: expected.count)
            input.withUnsafeBufferPointer { x in
                got.withUnsafeMutableBytes { Quantize.run(type, x.baseAddress!, $0.baseAddress!, count: input.count) }
            }
            let bytesPerBlock = 32 / type.blockSize * type.blockBytes
            for c in cases {
                let (label, first, count) = (c[0] as! String, c[1] as! Int, c[2] as! Int)
                let range = (first * bytesPerBlock)..<((first + count) * bytesPerBlock)
                XCTAssertEqual(Array(got[range]), Array(expected[range]), "\(name), case \(label): bytes differ from gguf-py")
            }
        }
    }

    /// Invariant: F32 encodes unchanged, and the helpers agree with run() (one value at a time).
    func testScalarHelpersMatchRun() {
        var rng = SeededRandom(seed: 7)
        let x = (0..<64).map { _ in rng.normal() * 100 }
        for type in [GGMLType.f32, .f16, .bf16] {
            var out = [UInt8](repeating: 0, count: type.byteCount(elements: 64)!)
            x.withUnsafeBufferPointer { p in out.withUnsafeMutableBytes { Quantize.run(type, p.baseAddress!, $0.baseAddress!, count: 64) } }
            let words: [UInt32] = type == .f32 ? stride(from: 0, to: out.count, by: 4).map { i in out[i..<(i + 4)].reversed().reduce(0) { $0 << 8 | UInt32($1) } }
                : stride(from: 0, to: out.count, by: 2).map { UInt32(out[$0]) | UInt32(out[$0 + 1]) << 8 }
            let want = x.map { type == .f32 ? $0.bitPattern : UInt32(type == .f16 ? Quantize.f16($0) : Quantize.bf16($0)) }
            XCTAssertEqual(words, want, type.name)
        }
        XCTAssertTrue(Quantize.canEncode(.q4_1) && !Quantize.canEncode(.q4_K) && !Quantize.canEncode(.q6_K))
    }

    /// Invariant: dequantize(quantize(x)) is within the format's bound of x, per element, on seeded random data
    /// of several scales:
    ///   Q8_0  |y − x| ≤ d/2 + 127·|d₁₆ − d|                    (d = max|x|/127 in fp32, d₁₆ the stored scale)
    ///   Q4_0  |y − x| ≤ |d|/2 + 8·|d₁₆ − d|, except codes clipped to 15 (x·id > 7.5): ≤ |d| + 8·|d₁₆ − d|
    ///   Q4_1  |y − x| ≤ d/2 + 15·|d₁₆ − d| + |m₁₆ − min|
    ///   F16   relative 2⁻¹¹ (normal range), absolute 2⁻²⁵ below it;  BF16 relative 2⁻⁸
    /// each plus a few fp32 ulps of the block's largest magnitude for the decode arithmetic.
    func testEncodeDecodeErrorIsWithinTheFormatBound() {
        var rng = SeededRandom(seed: 42)
        let blocks = 256
        var x = [Float](repeating: 0, count: blocks * 32)
        for b in 0..<blocks {
            let scale = Float(pow(10, Double(b % 8) - 4))
            for j in 0..<32 { x[b * 32 + j] = rng.normal() * scale + (b % 5 == 0 ? scale : 0) }
        }
        for type in [GGMLType.f16, .bf16, .q8_0, .q4_0, .q4_1] {
            var bytes = [UInt8](repeating: 0, count: type.byteCount(elements: x.count)!)
            var y = [Float](repeating: .nan, count: x.count)
            x.withUnsafeBufferPointer { p in bytes.withUnsafeMutableBytes { Quantize.run(type, p.baseAddress!, $0.baseAddress!, count: x.count) } }
            bytes.withUnsafeBytes { b in y.withUnsafeMutableBufferPointer { Dequantize.run(type, b.baseAddress!, $0.baseAddress!, count: x.count) } }
            var worst: Float = 0
            for b in 0..<blocks {
                let xs = Array(x[(b * 32)..<(b * 32 + 32)])
                let amax = xs.map(abs).max()!
                let eps = 4 * amax.ulp
                let stored = { (o: Int) in Float(Float16(bitPattern: UInt16(bytes[o]) | UInt16(bytes[o + 1]) << 8)) }
                for j in 0..<32 {
                    let e = abs(y[b * 32 + j] - xs[j])
                    let bound: Float
                    switch type {
                    case .f16: bound = abs(xs[j]) >= 0x1p-14 ? abs(xs[j]) * 0x1p-11 : 0x1p-25
                    case .bf16: bound = abs(xs[j]) * 0x1p-8
                    case .q8_0:
                        let d = amax / 127
                        bound = d / 2 + 127 * abs(stored(b * 34) - d) + eps
                    case .q4_0:
                        let m = xs[xs.firstIndex { abs($0) == amax }!], d = m / -8
                        let clipped = xs[j] * (1 / d) > 7.5
                        bound = (clipped ? abs(d) : abs(d) / 2) + 8 * abs(stored(b * 18) - d) + eps
                    default:
                        let lo = xs.min()!, d = (xs.max()! - lo) / 15
                        bound = d / 2 + 15 * abs(stored(b * 20) - d) + abs(stored(b * 20 + 2) - lo) + eps
                    }
                    worst = max(worst, e / bound)
                    if e > bound { XCTFail("\(type.name) block \(b) element \(j): |\(y[b * 32 + j]) − \(xs[j])| = \(e) > \(bound)"); break }
                }
            }
            XCTAssertGreaterThan(worst, 0.3, "\(type.name): the bound should be nearly reached, not vacuous")
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
