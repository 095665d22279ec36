// The frozen weight's products in each storage: per-use dequantization into bf16 (vectorised Q4_1 / Q8_0 /
// NF4 block expansion) against the scalar dequantizers' values rounded once at load, and both precisions
// against the naive fp32 product of the dequantized weights.
import DTFormats
import DTKernels
import DTModel
import XCTest

final class FrozenProductTests: XCTestCase {
    /// Stored blocks kept alive as a matrix's owner.
    final class Bytes {
        let raw: UnsafeMutableRawBufferPointer
        init(_ d: [UInt8]) { raw = .allocate(byteCount: d.count, alignment: 64); raw.copyBytes(from: d) }
        deinit { raw.deallocate() }
    }

    let (rows, cols, n) = (48, 96, 5)
    var rng: UInt64 = 21
    func next() -> UInt64 { rng = rng &* 6364136223846793005 &+ 1442695040888963407; return rng >> 17 }
    func uniform() -> Float { Float(next() % 20000) / 10000 - 1 }

    /// Random blocks of `type` with finite f16 scales (and minimums) of moderate size.
    func randomBlocks(_ type: GGMLType) -> Bytes {
        var bytes = [UInt8](repeating: 0, count: type.byteCount(elements: rows * cols)!)
        for i in bytes.indices { bytes[i] = UInt8(truncatingIfNeeded: next()) }
        let step = type.byteCount(elements: 32)!
        for b in stride(from: 0, to: bytes.count, by: step) {
            for (offset, value) in [(0, Float16(0.01 + 0.05 * abs(uniform()))), (2, Float16(0.3 * uniform()))] where offset == 0 || type == .q4_1 {
                withUnsafeBytes(of: value.bitPattern.littleEndian) { bytes[b + offset] = $0[0]; bytes[b + offset + 1] = $0[1] }
            }
        }
        return Bytes(bytes)
    }

    func storages() -> [(String, FrozenMatrix.Storage, Bytes?)] {
        let q41 = randomBlocks(.q4_1), q80 = randomBlocks(.q8_0)
        let values = (0..<(rows * cols)).map { _ in uniform() }
        return [
            ("Q4_1", .quantized(.q4_1, UnsafeRawPointer(q41.raw.baseAddress!), owner: q41), q41),
            ("Q8_0", .quantized(.q8_0, UnsafeRawPointer(q80.raw.baseAddress!), owner: q80), q80),
            ("NF4", .nf4(values.withUnsafeBufferPointer { NF4.quantize($0.baseAddress!, count: values.count) }), nil),
        ]
    }

    /// Invariant: a stored matrix dequantized per use into bf16 multiplies exactly like the same weights
    /// dequantized by the scalar reference and rounded to bf16 once (forward and input-gradient products), and
    /// both stay within bf16's bound of the fp32 product of the dequantized weights.
    func testPerUseBF16DequantizationEqualsScalarRounding() throws {
        guard CPUFeatures.hasBF16Products else { throw XCTSkip("no bf16 instructions") }
        let x = (0..<(n * cols)).map { _ in uniform() }, dy = (0..<(n * rows)).map { _ in uniform() }
        for (name, storage, bytes) in storages() {
            let perUse = FrozenMatrix(rows: rows, cols: cols, storage: storage, compute: .bf16)
            let atLoad = perUse.resident(.bf16), exact = perUse.resident(.fp32)
            let scratch = ProductScratch(weightElements: rows * cols, bf16Weights: true, inputElements: n * max(rows, cols))
            var y1 = [Float](repeating: 0, count: n * rows), y2 = y1, y3 = y1
            perUse.forward(x, rows: n, into: &y1, scratch: scratch)
            atLoad.forward(x, rows: n, into: &y2, scratch: scratch)
            exact.forward(x, rows: n, into: &y3, scratch: scratch)
            XCTAssertEqual(y1, y2, "\(name) forward: per-use bf16 equals rounding at load")
            var scale = [Float](repeating: 0, count: n * rows), w = [Float](repeating: 0, count: rows * cols)
            exact.dense(into: &w)
            BLAS.naiveGemm(.noTrans, .trans, m: n, n: rows, k: cols, a: x.map(abs), lda: cols, b: w.map(abs), ldb: cols, c: &scale, ldc: rows)
            for i in y1.indices { XCTAssertEqual(y1[i], y3[i], accuracy: 1e-2 * scale[i] + 1e-6, "\(name) forward vs fp32") }
            var d1 = [Float](repeating: 0, count: n * cols), d2 = d1
            perUse.backward(dy, rows: n, into: &d1, scratch: scratch)
            atLoad.backward(dy, rows: n, into: &d2, scratch: scratch)
            XCTAssertEqual(d1, d2, "\(name) backward: per-use bf16 equals rounding at load")
            _ = bytes
        }
    }
}
