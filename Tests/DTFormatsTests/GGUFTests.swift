// GGUF reading: metadata of every value type from a gguf-py-written file, and a clear FormatError (never a
// trap or a huge allocation) for each kind of broken header.
import DTFormats
import Foundation
import TestSupport
import XCTest

final class GGUFTests: XCTestCase {
    func fixture(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/\(name)", ofType: nil), "fixture \(name) missing: run scripts/make_model_fixtures.py")
    }

    /// Invariant: every GGUF value type written by the reference writer reads back with its value.
    func testMetadataOfEveryValueTypeMatchesTheReferenceWriter() throws {
        let g = try GGUFFile(path: try fixture("quant_blocks.gguf.bin"))
        XCTAssertEqual(g.metadata["test.u8"]?.int, 200)
        XCTAssertEqual(g.metadata["test.i8"]?.int, -100)
        XCTAssertEqual(g.metadata["test.u16"]?.int, 60000)
        XCTAssertEqual(g.metadata["test.i16"]?.int, -30000)
        XCTAssertEqual(g.metadata["test.u32"]?.int, 4_000_000_000)
        XCTAssertEqual(g.metadata["test.i32"]?.int, -2_000_000_000)
        XCTAssertEqual(g.metadata["test.f32"]?.double, 1.5)
        XCTAssertEqual(g.metadata["test.bool"]?.bool, true)
        XCTAssertEqual(g.metadata["test.string"]?.string, "héllo wörld")
        XCTAssertEqual(g.metadata["test.array_i32"]?.array?.compactMap(\.int), [1, -2, 3])
        XCTAssertEqual(g.metadata["test.array_str"]?.array?.compactMap(\.string), ["a", "bc", ""])
        XCTAssertEqual(g.metadata["test.u64"]?.int, 1 << 40)
        XCTAssertEqual(g.metadata["test.i64"]?.int, -(1 << 40))
        XCTAssertEqual(g.metadata["test.f64"]?.double, 0.1)
    }

    func expectError(_ bytes: GGUFBuilder, contains fragment: String, file: StaticString = #filePath, line: UInt = #line) {
        let path = bytes.write()
        XCTAssertThrowsError(try GGUFFile(path: path), file: file, line: line) { error in
            guard let e = error as? FormatError else { return XCTFail("not a FormatError: \(error)", file: file, line: line) }
            XCTAssertEqual(e.file, path, file: file, line: line)
            XCTAssertTrue(e.description.contains(fragment), "'\(e)' lacks '\(fragment)'", file: file, line: line)
        }
    }

    /// Invariant: a file that is not GGUF is refused at offset 0 with the expected magic named.
    func testWrongMagicIsRefused() {
        var b = GGUFBuilder()
        b.bytes = Array("GGML".utf8) + [UInt8](repeating: 0, count: 20)
        expectError(b, contains: "expected magic 'GGUF'")
    }

    func testUnsupportedVersionIsRefused() {
        var b = GGUFBuilder(); b.header(tensors: 0, kvs: 0, version: 7)
        expectError(b, contains: "expected GGUF version 2 or 3, found 7")
    }

    /// Invariant: absurd counts are rejected before any allocation sized by them.
    func testAbsurdCountsAreRefusedWithoutAllocating() {
        var b = GGUFBuilder(); b.header(tensors: UInt64.max / 2, kvs: 0)
        expectError(b, contains: "tensor count")
        var c = GGUFBuilder(); c.header(tensors: 0, kvs: 1 << 60)
        expectError(c, contains: "metadata count")
        var d = GGUFBuilder(); d.header(tensors: 0, kvs: 1); d.string("k"); d.u32(9); d.u32(4); d.u64(1 << 50)
        expectError(d, contains: "array of")
        var e = GGUFBuilder(); e.header(tensors: 0, kvs: 1); e.u64(1 << 40); e.bytes += [UInt8](repeating: 0, count: 64)
        expectError(e, contains: "string length")
    }

    func testTruncatedHeaderNamesTheOffset() {
        var b = GGUFBuilder(); b.header(tensors: 1, kvs: 1); b.kvString("general.architecture", "llama")
        b.bytes += [3, 0]   // a tensor name length cut short
        expectError(b, contains: "truncated")
    }

    func testUnknownValueTypeIsRefused() {
        var b = GGUFBuilder(); b.header(tensors: 0, kvs: 1); b.string("key"); b.u32(99); b.u32(0)
        expectError(b, contains: "unknown value type 99")
    }

    func testInvalidUTF8KeyIsRefused() {
        var b = GGUFBuilder(); b.header(tensors: 0, kvs: 1); b.u64(2); b.bytes += [0xC3, 0x28]; b.u32(4); b.u32(1)
        expectError(b, contains: "expected UTF-8")
    }

    func testUnknownTensorTypeIsRefused() {
        var b = GGUFBuilder(); b.header(tensors: 1, kvs: 0); b.tensorInfo("w", dims: [32], type: 77, offset: 0); b.align()
        b.bytes += [UInt8](repeating: 0, count: 128)
        expectError(b, contains: "unknown ggml type 77")
    }

    func testTooManyDimensionsAreRefused() {
        var b = GGUFBuilder(); b.header(tensors: 1, kvs: 0); b.tensorInfo("w", dims: [1, 1, 1, 1, 1], type: 0, offset: 0)
        expectError(b, contains: "expected 1 to 4 dimensions")
    }

    /// Invariant: tensor data past the end of the file is an error naming the tensor, not an out-of-bounds read.
    func testTensorDataPastTheEndIsRefused() {
        var b = GGUFBuilder(); b.header(tensors: 1, kvs: 0); b.tensorInfo("blk.0.w", dims: [64, 64], type: 0, offset: 0); b.align()
        b.bytes += [UInt8](repeating: 0, count: 100)
        expectError(b, contains: "tensor 'blk.0.w'")
    }

    func testRowNotMultipleOfBlockIsRefused() {
        var b = GGUFBuilder(); b.header(tensors: 1, kvs: 0); b.tensorInfo("w", dims: [33, 2], type: 2, offset: 0); b.align()
        b.bytes += [UInt8](repeating: 0, count: 256)
        expectError(b, contains: "block size 32")
    }

    func testMisalignedOffsetIsRefused() {
        var b = GGUFBuilder(); b.header(tensors: 1, kvs: 0); b.tensorInfo("w", dims: [8], type: 0, offset: 3); b.align()
        b.bytes += [UInt8](repeating: 0, count: 256)
        expectError(b, contains: "not aligned")
    }

    func testEmptyAndMissingFilesGiveErrors() {
        let empty = GGUFBuilder().write()
        XCTAssertThrowsError(try GGUFFile(path: empty)) { XCTAssertTrue("\($0)".contains("truncated")) }
        XCTAssertThrowsError(try GGUFFile(path: "/nonexistent/model.gguf")) { XCTAssertTrue("\($0)".contains("cannot open")) }
    }
}
