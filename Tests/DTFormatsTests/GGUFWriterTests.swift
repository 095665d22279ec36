// GGUFWriter writes what gguf-py's GGUFWriter writes (byte for byte), reads back through GGUFFile with every value
// and tensor as given, copies records from an existing GGUF unchanged, and refuses inputs GGUF readers would
// refuse. AtomicFileWriter never leaves a partial output or a temporary file, and never touches an existing file
// unless it commits over it with overwrite allowed. Fixtures: scripts/make_quant_fixtures.py.
import DTFormats
import Foundation
import TestSupport
import XCTest
#if canImport(Glibc)
import Glibc
#endif

final class GGUFWriterTests: XCTestCase {
    func fixture(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/\(name)", ofType: nil), "fixture \(name) missing: run scripts/make_quant_fixtures.py")
    }

    func bytes(_ path: String) -> [UInt8] {
        FileManager.default.contents(atPath: path).map { [UInt8]($0) } ?? []
    }

    func listing(_ dir: String) -> [String] {
        ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted()
    }

    /// v(i) = ((7 i) mod 23 − 11) / 8, exact in fp32: the tensor values of the reference file.
    func pattern(_ n: Int) -> [Float] { (0..<n).map { Float((7 * $0) % 23 - 11) / 8 } }

    func encode(_ type: GGMLType, _ x: [Float]) -> [UInt8] {
        var out = [UInt8](repeating: 0, count: type.byteCount(elements: x.count)!)
        x.withUnsafeBufferPointer { p in out.withUnsafeMutableBytes { Quantize.run(type, p.baseAddress!, $0.baseAddress!, count: x.count) } }
        return out
    }

    /// The content of writer_reference.gguf.bin: metadata of every value type, six tensors of sizes that are not
    /// multiples of 32.
    let referenceMetadata: [GGUFMetadataEntry] = [
        .value("general.architecture", .string("dtrain-test")),
        .value("t.u8", .u8(200)), .value("t.i8", .i8(-100)), .value("t.u16", .u16(60000)), .value("t.i16", .i16(-30000)),
        .value("t.u32", .u32(4_000_000_000)), .value("t.i32", .i32(-2_000_000_000)), .value("t.u64", .u64((1 << 63) + 5)),
        .value("t.i64", .i64(-(1 << 62))), .value("t.f32", .f32(1.5)), .value("t.f64", .f64(0.1)), .value("t.bool", .bool(true)),
        .value("t.false", .bool(false)), .value("t.string", .string("héllo wörld")), .value("t.empty_string", .string("")),
        .value("t.a_u8", .array(.u8([0, 255, 7]))), .value("t.a_i8", .array(.i8([-128, 127]))),
        .value("t.a_u16", .array(.u16([65535, 1]))), .value("t.a_i16", .array(.i16([-32768, 5]))),
        .value("t.a_u32", .array(.u32([4_294_967_295, 0]))), .value("t.a_i32", .array(.i32([1, -2, 3]))),
        .value("t.a_u64", .array(.u64([.max]))), .value("t.a_i64", .array(.i64([.min, 9]))),
        .value("t.a_f32", .array(.f32([0.25, -2, 3.5]))), .value("t.a_f64", .array(.f64([0.1, -1e300]))),
        .value("t.a_bool", .array(.bool([true, false, true]))), .value("t.a_str", .array(.string(["a", "bc", "", "ünï"]))),
        .value("t.nested", .array(.array([.i32([1, 2]), .i32([3])]))),
    ]

    var referenceTensors: [(GGUFTensorSpec, [UInt8])] {
        [(GGUFTensorSpec(name: "t.f32", dims: [3], type: .f32), encode(.f32, pattern(3))),
         (GGUFTensorSpec(name: "t.f16", dims: [5, 3], type: .f16), encode(.f16, pattern(15))),
         (GGUFTensorSpec(name: "t.bf16", dims: [7], type: .bf16), encode(.bf16, pattern(7))),
         (GGUFTensorSpec(name: "t.q8_0", dims: [64, 2], type: .q8_0), encode(.q8_0, pattern(128))),
         (GGUFTensorSpec(name: "t.q4_0", dims: [32], type: .q4_0), encode(.q4_0, pattern(32))),
         (GGUFTensorSpec(name: "t.q4_1", dims: [32, 3], type: .q4_1), encode(.q4_1, pattern(96)))]
    }

    func write(_ path: String, _ metadata: [GGUFMetadataEntry], _ tensors: [(GGUFTensorSpec, [UInt8])],
               alignment: Int = 32, overwrite: Bool = false) throws {
        let w = try GGUFWriter(path: path, metadata: metadata, tensors: tensors.map(\.0), alignment: alignment, overwrite: overwrite)
        for (spec, data) in tensors { try data.withUnsafeBytes { try w.writeTensor(spec.name, $0) } }
        try w.finish()
    }

    /// What the reader reports for a written value (it keeps signedness and width only as uint/int/float).
    func readerValue(_ v: GGUFMetadataValue) -> GGUFValue {
        switch v {
        case .u8(let x): .uint(UInt64(x)); case .u16(let x): .uint(UInt64(x)); case .u32(let x): .uint(UInt64(x)); case .u64(let x): .uint(x)
        case .i8(let x): .int(Int64(x)); case .i16(let x): .int(Int64(x)); case .i32(let x): .int(Int64(x)); case .i64(let x): .int(x)
        case .f32(let x): .float(Double(x)); case .f64(let x): .float(x); case .bool(let x): .bool(x); case .string(let s): .string(s)
        case .array(let a): readerArray(a)
        }
    }

    func readerArray(_ a: GGUFArray) -> GGUFValue {
        switch a {
        case .u8(let xs): .array(xs.map { readerValue(.u8($0)) }); case .i8(let xs): .array(xs.map { readerValue(.i8($0)) })
        case .u16(let xs): .array(xs.map { readerValue(.u16($0)) }); case .i16(let xs): .array(xs.map { readerValue(.i16($0)) })
        case .u32(let xs): .array(xs.map { readerValue(.u32($0)) }); case .i32(let xs): .array(xs.map { readerValue(.i32($0)) })
        case .u64(let xs): .array(xs.map { readerValue(.u64($0)) }); case .i64(let xs): .array(xs.map { readerValue(.i64($0)) })
        case .f32(let xs): .array(xs.map { readerValue(.f32($0)) }); case .f64(let xs): .array(xs.map { readerValue(.f64($0)) })
        case .bool(let xs): .array(xs.map { readerValue(.bool($0)) }); case .string(let xs): .array(xs.map { readerValue(.string($0)) })
        case .array(let xs): .array(xs.map(readerArray))
        }
    }

    /// Invariant: for the same metadata and tensors, the file is byte-identical to gguf-py's GGUFWriter output
    /// (header, tensor offsets, padding after every tensor including the last), with the tensors encoded by Quantize.
    func testWriterMatchesTheReferenceWriterByteForByte() throws {
        let path = temporaryDirectory() + "/same.gguf"
        try write(path, referenceMetadata, referenceTensors)
        let want = bytes(try fixture("writer_reference.gguf.bin"))
        let got = bytes(path)
        XCTAssertEqual(got.count, want.count)
        XCTAssertNil((0..<min(got.count, want.count)).first { got[$0] != want[$0] }, "first differing byte offset")
    }

    /// Invariant: written with a 64-byte alignment, GGUFFile reads back every key in order with its value, every
    /// tensor with its dims, type and bytes, at offsets aligned to 64; `general.alignment` is added when absent.
    func testRoundTripOfEveryValueTypeAndTensorType() throws {
        let path = temporaryDirectory() + "/rt.gguf"
        let extra = (GGUFTensorSpec(name: "blk.0.attn_q.weight", dims: [32, 5, 1, 2], type: .q8_0), encode(.q8_0, pattern(320).map { $0 * 3 }))
        try write(path, referenceMetadata, referenceTensors + [extra], alignment: 64)
        let g = try GGUFFile(path: path)
        XCTAssertEqual(g.version, 3)
        XCTAssertEqual(g.metadataKeys, referenceMetadata.map(\.key) + ["general.alignment"])
        for case .value(let key, let value) in referenceMetadata {
            XCTAssertEqual(g.metadata[key], readerValue(value), key)
        }
        XCTAssertEqual(g.metadata["general.alignment"], .uint(64))
        XCTAssertEqual(g.tensors.map(\.name), (referenceTensors + [extra]).map(\.0.name))
        for (spec, data) in referenceTensors + [extra] {
            let info = try XCTUnwrap(g.tensor(spec.name))
            XCTAssertEqual(info.dims, spec.dims, spec.name)
            XCTAssertEqual(info.type, spec.type, spec.name)
            XCTAssertEqual(info.fileOffset % 64, 0, spec.name)
            XCTAssertEqual([UInt8](g.data(of: info)), data, spec.name)
        }
        XCTAssertEqual(bytes(path).count % 64, 0, "the last tensor is padded too")
    }

    /// Invariant: copying every record and tensor of a gguf-py file reproduces that file byte for byte, with the
    /// same metadata values; each raw record is exactly the bytes from its key's length to the end of its value.
    func testCopiedRecordsReproduceTheSourceFile() throws {
        let source = try fixture("quant_blocks.gguf.bin")
        let g = try GGUFFile(path: source)
        let u8 = try XCTUnwrap(g.rawRecord("test.u8"))
        XCTAssertEqual([UInt8](u8), [7, 0, 0, 0, 0, 0, 0, 0] + Array("test.u8".utf8) + [0, 0, 0, 0, 200])
        let ranges = g.metadataKeys.map { g.metadataRecords[$0]! }
        XCTAssertEqual(ranges.first?.lowerBound, 24, "the first record follows the 24-byte header")
        XCTAssertTrue(zip(ranges, ranges.dropFirst()).allSatisfy { $0.upperBound == $1.lowerBound }, "records are contiguous")
        XCTAssertNil(g.rawRecord("no.such.key"))

        let path = temporaryDirectory() + "/copy.gguf"
        let w = try GGUFWriter(path: path, metadata: g.metadataKeys.map { g.copiedEntry($0)! },
                               tensors: g.tensors.map { GGUFTensorSpec(name: $0.name, dims: $0.dims, type: $0.type) }, overwrite: false)
        for info in g.tensors { try w.writeTensor(info.name, g.data(of: info)) }
        try w.finish()
        XCTAssertEqual(bytes(path), bytes(source))
        let copy = try GGUFFile(path: path)
        XCTAssertEqual(copy.metadataKeys, g.metadataKeys)
        XCTAssertEqual(copy.metadata, g.metadata)
    }

    func expectRefusal(_ metadata: [GGUFMetadataEntry], _ tensors: [GGUFTensorSpec], alignment: Int = 32, _ fragment: String,
                       line: UInt = #line) {
        let dir = temporaryDirectory(), path = dir + "/bad.gguf"
        XCTAssertThrowsError(try GGUFWriter(path: path, metadata: metadata, tensors: tensors, alignment: alignment, overwrite: false),
                             line: line) { error in
            guard let e = error as? WriteError else { return XCTFail("not a WriteError: \(error)", line: line) }
            XCTAssertEqual(e.path, path, line: line)
            XCTAssertTrue(e.message.contains(fragment), "'\(e)' lacks '\(fragment)'", line: line)
        }
        XCTAssertEqual(listing(dir), [], "a refused header creates no file", line: line)
    }

    /// Invariant: duplicate keys or tensor names, a copied record that is not exactly one record for its key, a
    /// disagreeing general.alignment, and tensors llama.cpp would refuse are WriteErrors before any file exists.
    func testInvalidHeadersAreRefusedBeforeWriting() throws {
        let g = try GGUFFile(path: try fixture("quant_blocks.gguf.bin"))
        let raw = try XCTUnwrap(g.rawRecord("test.u8"))
        let w = GGUFTensorSpec(name: "w", dims: [32], type: .q8_0)
        expectRefusal([.value("a", .u8(1)), .value("a", .u8(2))], [], "duplicate metadata key 'a'")
        expectRefusal([g.copiedEntry("test.u8")!, .value("test.u8", .u8(2))], [], "duplicate metadata key 'test.u8'")
        expectRefusal([.copied(key: "test.u16", raw: raw, owner: g)], [], "expected key 'test.u16', found 'test.u8'")
        expectRefusal([.copied(key: "test.u8", raw: UnsafeRawBufferPointer(rebasing: raw.dropLast()), owner: g)], [], "is not one GGUF key-value record")
        let at = g.metadataRecords["test.u8"]!.lowerBound
        expectRefusal([.copied(key: "test.u8", raw: UnsafeRawBufferPointer(rebasing: g.mapped.bytes[at..<(at + raw.count + 1)]), owner: g)], [], "1 bytes follow")
        expectRefusal([.value("general.alignment", .u32(64))], [], "aligned to 32")
        expectRefusal([.value("general.alignment", .i32(64))], [], alignment: 64, "expected u32 64")
        expectRefusal([], [w, w], "duplicate tensor name 'w'")
        expectRefusal([], [GGUFTensorSpec(name: String(repeating: "x", count: 64), dims: [32], type: .f32)], "1 to 63 bytes")
        expectRefusal([], [GGUFTensorSpec(name: "w", dims: [48], type: .q4_0)], "not a multiple of the Q4_0 block size 32")
        expectRefusal([], [GGUFTensorSpec(name: "w", dims: [1, 1, 1, 1, 1], type: .f32)], "1 to 4 positive dimensions")
        expectRefusal([], [GGUFTensorSpec(name: "w", dims: [32, 0], type: .f32)], "1 to 4 positive dimensions")
    }

    /// Invariant: tensors must come in declared order with their exact byte counts and all of them before
    /// finish(); a writer given up on (or released unfinished) leaves neither the output nor a temporary file.
    func testTensorsMustComeInOrderWithTheirSizes() throws {
        let dir = temporaryDirectory(), path = dir + "/order.gguf"
        let specs = [GGUFTensorSpec(name: "a", dims: [3], type: .f32), GGUFTensorSpec(name: "b", dims: [32], type: .q8_0)]
        var w: GGUFWriter? = try GGUFWriter(path: path, metadata: [], tensors: specs, overwrite: false)
        let twelve = [UInt8](repeating: 1, count: 12)
        XCTAssertThrowsError(try twelve.withUnsafeBytes { try w!.writeTensor("b", $0) }) { XCTAssertTrue("\($0)".contains("expected tensor 'a'")) }
        XCTAssertThrowsError(try twelve.dropLast().withUnsafeBytes { try w!.writeTensor("a", $0) }) { XCTAssertTrue("\($0)".contains("expected 12 bytes, got 11")) }
        try twelve.withUnsafeBytes { try w!.writeTensor("a", $0) }
        XCTAssertThrowsError(try w!.finish()) { XCTAssertTrue("\($0)".contains("only 1 of 2 tensors")) }
        XCTAssertEqual(listing(dir).count, 1, "only the temporary file exists while writing")
        XCTAssertFalse(FileManager.default.fileExists(atPath: path))
        w = nil
        XCTAssertEqual(listing(dir), [], "an unfinished writer leaves nothing behind")
    }

    // MARK: AtomicFileWriter

    /// Invariant: an existing output is refused without overwrite (the message names it and --force) and keeps
    /// its bytes; GGUFWriter passes the refusal on.
    func testExistingOutputIsRefusedWithoutOverwrite() throws {
        let dir = temporaryDirectory(), path = dir + "/model.gguf"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("precious".utf8)))
        for attempt in [{ _ = try AtomicFileWriter(path: path, overwrite: false) },
                        { _ = try GGUFWriter(path: path, metadata: [], tensors: [], overwrite: false) }] {
            XCTAssertThrowsError(try attempt()) { error in
                XCTAssertEqual((error as? WriteError)?.path, path)
                XCTAssertTrue("\(error)".contains("already exists; pass --force"), "\(error)")
            }
        }
        XCTAssertEqual(bytes(path), Array("precious".utf8))
        XCTAssertEqual(listing(dir), ["model.gguf"])
        XCTAssertThrowsError(try AtomicFileWriter(path: dir, overwrite: true)) { XCTAssertTrue("\($0)".contains("directory"), "\($0)") }
        XCTAssertThrowsError(try AtomicFileWriter(path: dir + "/missing/x.gguf", overwrite: false)) {
            XCTAssertTrue("\($0)".contains("cannot create the temporary file") && "\($0)".contains("No such file"), "\($0)")
        }
    }

    /// Invariant: with overwrite the old file stays whole until commit() replaces it; abandon() keeps it.
    func testOverwriteReplacesTheFileOnlyAtCommit() throws {
        let dir = temporaryDirectory(), path = dir + "/out.bin"
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data("old".utf8)))
        let dropped = try AtomicFileWriter(path: path, overwrite: true)
        try Array("never".utf8).withUnsafeBytes { try dropped.write($0) }
        dropped.abandon()
        XCTAssertEqual(bytes(path), Array("old".utf8))
        XCTAssertEqual(listing(dir), ["out.bin"])

        let w = try AtomicFileWriter(path: path, overwrite: true)
        XCTAssertEqual(w.temporaryPath, dir + "/.out.bin.tmp-\(getpid())")
        try Array("new".utf8).withUnsafeBytes { try w.write($0) }
        try w.pad(to: 8)
        XCTAssertEqual(w.offset, 8)
        XCTAssertEqual(bytes(path), Array("old".utf8), "untouched before commit")
        try w.commit()
        XCTAssertEqual(bytes(path), Array("new".utf8) + [0, 0, 0, 0, 0])
        XCTAssertEqual(listing(dir), ["out.bin"])
        XCTAssertThrowsError(try Array("x".utf8).withUnsafeBytes { try w.write($0) }) { XCTAssertTrue("\($0)".contains("already committed")) }
    }

    /// Invariant: a write that fails (here EFBIG: RLIMIT_FSIZE of 64 KiB with SIGXFSZ ignored, which works as
    /// root) throws a WriteError with the path and the system's reason, removes the temporary file at once, and
    /// leaves the existing file byte for byte as it was.
    func testFailedWriteLeavesNoTemporaryFileAndTheOldFileUntouched() throws {
        let dir = temporaryDirectory(), path = dir + "/big.gguf"
        let old = [UInt8](repeating: 7, count: 100_000)
        XCTAssertTrue(FileManager.default.createFile(atPath: path, contents: Data(old)))
        let w = try AtomicFileWriter(path: path, overwrite: true)
        let chunk = [UInt8](repeating: 1, count: 40_000)
        var limits = rlimit()
        getrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limits)
        let saved = limits
        let handler = signal(SIGXFSZ, SIG_IGN)
        limits.rlim_cur = 64 << 10
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &limits)
        var caught: Error?
        do {
            for _ in 0..<3 { try chunk.withUnsafeBytes { try w.write($0) } }
        } catch { caught = error }
        var restore = saved
        setrlimit(__rlimit_resource_t(RLIMIT_FSIZE.rawValue), &restore)
        signal(SIGXFSZ, handler)

        let e = try XCTUnwrap(caught as? WriteError, "expected a WriteError, got \(String(describing: caught))")
        XCTAssertEqual(e.path, path)
        XCTAssertTrue(e.message.contains("File too large") && e.message.contains(w.temporaryPath), e.message)
        XCTAssertEqual(listing(dir), ["big.gguf"], "the temporary file is gone")
        XCTAssertEqual(bytes(path), old)
        XCTAssertThrowsError(try w.commit()) { XCTAssertTrue("\($0)".contains("abandoned")) }
        XCTAssertEqual(bytes(path), old)
    }
}
