// bf16 products and conversion against independent references: rounding against a nearest-even choice
// between the two bf16 neighbours computed in Swift, oneDNN's product against the naive triple loop.
import DTKernels
import XCTest

final class BF16Tests: XCTestCase {
    /// Reference rounding, written independently of the C code: the nearer of the two bf16 values that
    /// bracket x (ties to the even one); denormals become signed zero and NaN stays NaN, as vcvtneps2bf16 does.
    func referenceBF16(_ x: Float) -> UInt16 {
        if x.isNaN { return 0x7FC0 }
        if x.isSubnormal { return x.sign == .minus ? 0x8000 : 0 }
        let bits = x.bitPattern
        let down = UInt16(bits >> 16)
        if bits & 0xFFFF == 0 { return down }
        let up = down &+ 1   // one bf16 step further from zero (the infinity past the largest finite value)
        let lower = Double(BF16.float(down))
        let upper = BF16.float(up).isInfinite ? (x.sign == .minus ? -0x1p128 : 0x1p128) : Double(BF16.float(up))
        let dl = abs(Double(x) - lower), du = abs(upper - Double(x))
        if dl < du { return down }
        if du < dl { return up }
        return down & 1 == 0 ? down : up
    }

    /// Invariant: the vector conversion, the scalar conversion and the reference give the same bits, for
    /// random values, exact ties, values near the overflow edge, infinities, zeros and denormals.
    func testConversionRoundsToNearestEven() {
        var seed: UInt64 = 3
        func next() -> UInt32 { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return UInt32(truncatingIfNeeded: seed >> 29) }
        var values: [Float] = (0..<4000).map { _ in Float(bitPattern: next() & 0x7FFF_FFFF | (next() & 1) << 31) }.filter { !$0.isNaN }
        values += [0, -0, 1, -1, .infinity, -.infinity, Float.greatestFiniteMagnitude, 3.0e38, 1e-40, -1e-40,
                   Float(bitPattern: 0x3F80_8000), Float(bitPattern: 0x3F81_8000), Float(bitPattern: 0x3F80_8001), Float(bitPattern: 0x7F7F_FFFF)]
        values += (0..<37).map { Float($0) * 0.173 - 3 }   // 37: a vector tail
        var vector = [UInt16](repeating: 0, count: values.count), scalar = vector
        BF16.convert(values, ld: values.count, into: &vector, rows: 1, cols: values.count)
        BF16.convertScalar(values, into: &scalar, count: values.count)
        for (i, x) in values.enumerated() {
            XCTAssertEqual(scalar[i], referenceBF16(x), "scalar rounding of \(x) (0x\(String(x.bitPattern, radix: 16)))")
            XCTAssertEqual(vector[i], scalar[i], "vector rounding of \(x)")
        }
        var nan = [UInt16](repeating: 0, count: 1)
        BF16.convert([Float.nan], ld: 1, into: &nan, rows: 1, cols: 1)
        XCTAssertTrue(BF16.float(nan[0]).isNaN, "NaN stays NaN")
    }

    /// Invariant: oneDNN's bf16 product equals the naive product of the same bf16 inputs (up to fp32
    /// accumulation order), and the naive fp32 product of the unrounded inputs within bf16's bound
    /// (each element within 1e-2 of Σ|a||b|, the scale of its terms), for every transpose, odd sizes,
    /// wide leading dimensions, and with accumulation into C.
    func testGemmMatchesNaiveReferenceForEveryTranspose() {
        var seed: UInt64 = 11
        func rnd() -> Float { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: seed >> 11) % 2000) / 1000 - 1 }
        for (m, n, k) in [(1, 1, 1), (7, 5, 3), (33, 17, 65), (64, 128, 96), (130, 3, 257), (1, 576, 192)] {
            for ta in [Transpose.noTrans, .trans] { for tb in [Transpose.noTrans, .trans] { for accumulate in [false, true] {
                let lda = (ta == .noTrans ? k : m) + 2, ldb = (tb == .noTrans ? n : k) + 1, ldc = n + 3
                let a = (0..<(ta == .noTrans ? m : k) * lda).map { _ in rnd() }
                let b = (0..<(tb == .noTrans ? k : n) * ldb).map { _ in rnd() }
                var a16 = [UInt16](repeating: 0, count: a.count), b16 = [UInt16](repeating: 0, count: b.count)
                BF16.convertScalar(a, into: &a16, count: a.count)
                BF16.convertScalar(b, into: &b16, count: b.count)
                let c0 = (0..<m * ldc).map { _ in rnd() }
                var fast = c0, naive = c0, exact = c0, scale = [Float](repeating: 0, count: m * ldc)
                BF16.gemm(ta, tb, m: m, n: n, k: k, a: a16, lda: lda, b: b16, ldb: ldb, accumulate: accumulate, c: &fast, ldc: ldc)
                BF16.naiveGemm(ta, tb, m: m, n: n, k: k, a: a16, lda: lda, b: b16, ldb: ldb, accumulate: accumulate, c: &naive, ldc: ldc)
                BLAS.naiveGemm(ta, tb, m: m, n: n, k: k, a: a, lda: lda, b: b, ldb: ldb, beta: accumulate ? 1 : 0, c: &exact, ldc: ldc)
                let absA = a.map(abs), absB = b.map(abs)
                BLAS.naiveGemm(ta, tb, m: m, n: n, k: k, a: absA, lda: lda, b: absB, ldb: ldb, c: &scale, ldc: ldc)
                let label = "\(m)x\(n)x\(k) \(ta) \(tb) accumulate \(accumulate)"
                for i in 0..<m { for j in 0..<n {
                    let e = i * ldc + j
                    XCTAssertEqual(fast[e], naive[e], accuracy: 1e-5 * (scale[e] + abs(naive[e])) + 1e-6, "same inputs: " + label)
                    XCTAssertEqual(fast[e], exact[e], accuracy: 1e-2 * scale[e] + 1e-6, "fp32 reference: " + label)
                } }
                for i in 0..<m { for j in n..<ldc { XCTAssertEqual(fast[i * ldc + j], c0[i * ldc + j], "padding untouched: " + label) } }
            } } }
        }
    }

    /// Invariant: without AVX512_BF16 and AMX (hidden here as on an older CPU), `auto` resolves to fp32
    /// and `bf16` is a clear error, never a crash; `fp32` is always fp32.
    func testHiddenBF16FeaturesFallBackToFP32() {
        let saved = CPUFeatures.hidden
        defer { CPUFeatures.hidden = saved }
        CPUFeatures.hidden = ["avx512_bf16", "amx_bf16"]
        XCTAssertFalse(CPUFeatures.hasBF16Products)
        XCTAssertEqual(try ComputePrecision.resolve(.auto), .fp32)
        XCTAssertEqual(try ComputePrecision.resolve(.fp32), .fp32)
        XCTAssertThrowsError(try ComputePrecision.resolve(.bf16)) { error in
            XCTAssertTrue("\(error)".contains("AVX512_BF16 or AMX"), "\(error)")
        }
        CPUFeatures.hidden = saved
        XCTAssertEqual(try ComputePrecision.resolve(.fp32), .fp32)
        if CPUFeatures.hasBF16Products { XCTAssertEqual(try ComputePrecision.resolve(.auto), .bf16) }
    }
}
