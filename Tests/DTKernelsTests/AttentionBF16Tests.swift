// The attention tiles' bf16 path against fp32 references: the AVX512-BF16 tile product against the naive
// product of the same bf16-rounded inputs and against the exact fp32 product, and attention forward and
// backward with `compute: bf16` against `compute: fp32` (which the finite-difference tests check).
import DTKernels
import Foundation
import XCTest

final class AttentionBF16Tests: XCTestCase {
    func requireBF16Kernel() throws {
        guard Attention.usesSmallKernel, CPUFeatures.avx512BF16 else { throw XCTSkip("no AVX512-BF16: attention runs in fp32") }
    }

    func rounded(_ x: [Float]) -> [Float] {
        var bits = [UInt16](repeating: 0, count: x.count), out = [Float](repeating: 0, count: x.count)
        BF16.convertScalar(x, into: &bits, count: x.count)
        BF16.toFloat(bits, into: &out, count: x.count)
        return out
    }

    /// Invariant: the bf16 tile product equals the naive product of the bf16-rounded inputs up to fp32
    /// accumulation order (1e-5 of Σ|a||b|), and the exact fp32 product within bf16's bound (1e-2 of Σ|a||b|),
    /// for A with contiguous rows, contiguous columns (Aᵀ) or neither, B packed from B or from Bᵀ (the same
    /// words), odd sizes off the 6 × 64 block and the pair grid, and accumulation; C's padding is untouched.
    func testBF16TileProductMatchesRoundedAndExactProducts() throws {
        try requireBF16Kernel()
        var rng = Rand(s: 21)
        for (m, n, k) in [(1, 1, 1), (5, 17, 3), (64, 64, 64), (7, 200, 65), (130, 64, 190), (6, 65, 2), (13, 129, 33)] {
            for layout in ["rows", "columns", "strided"] { for accumulate in [false, true] {
                let lda = (layout == "columns" ? m : k) + 3
                let (aRow, aCol) = layout == "rows" ? (lda, 1) : layout == "columns" ? (1, lda) : (2 * lda, 2)
                let a = rng.array(layout == "columns" ? k * lda : m * aRow)
                let ldb = n + 5, ldc = n + 2
                let b = rng.array(k * ldb)
                var bt = [Float](repeating: 0, count: n * (k + 1))   // Bᵀ (n, k), leading dimension k + 1
                for p in 0..<k { for j in 0..<n { bt[j * (k + 1) + p] = b[p * ldb + j] } }
                let ldPairs = n + 1, pairRows = (k + 1) / 2
                var pairs = [UInt32](repeating: 0, count: pairRows * ldPairs), fromTransposed = pairs
                Attention.packPairs(b, ld: ldb, k: k, n: n, into: &pairs, ldPairs: ldPairs)
                Attention.packPairs(bt, ld: k + 1, k: k, n: n, transposed: true, into: &fromTransposed, ldPairs: ldPairs)
                XCTAssertEqual(pairs, fromTransposed, "packing B and Bᵀ give the same words: \(m)x\(n)x\(k)")
                var scratch = [UInt32](repeating: 0, count: Attention.bf16ScratchWords(m: m, k: k))
                let c0 = rng.array(m * ldc)
                var fast = c0, naive = c0, exact = c0, scale = [Float](repeating: 0, count: m * ldc)
                Attention.productBF16(m: m, n: n, k: k, alpha: 0.75, a: a, aRow: aRow, aCol: aCol, bPairs: pairs, ldb: ldPairs,
                                      accumulate: accumulate, c: &fast, ldc: ldc, scratch: &scratch)
                // References on A gathered into a plain (m, k) matrix.
                var dense = [Float](repeating: 0, count: m * k)
                for i in 0..<m { for p in 0..<k { dense[i * k + p] = a[i * aRow + p * aCol] } }
                let beta: Float = accumulate ? 1 : 0
                BLAS.naiveGemm(.noTrans, .noTrans, m: m, n: n, k: k, alpha: 0.75, a: rounded(dense), lda: k, b: rounded(b), ldb: ldb,
                               beta: beta, c: &naive, ldc: ldc)
                BLAS.naiveGemm(.noTrans, .noTrans, m: m, n: n, k: k, alpha: 0.75, a: dense, lda: k, b: b, ldb: ldb, beta: beta, c: &exact, ldc: ldc)
                BLAS.naiveGemm(.noTrans, .noTrans, m: m, n: n, k: k, alpha: 0.75, a: dense.map(abs), lda: k, b: b.map(abs), ldb: ldb,
                               c: &scale, ldc: ldc)
                let label = "\(m)x\(n)x\(k) A \(layout) accumulate \(accumulate)"
                for i in 0..<m { for j in 0..<n {
                    let e = i * ldc + j, bound = scale[e] + (accumulate ? abs(c0[e]) : 0)
                    XCTAssertEqual(fast[e], naive[e], accuracy: 1e-5 * bound + 1e-6, "rounded inputs: " + label + " (\(i), \(j))")
                    XCTAssertEqual(fast[e], exact[e], accuracy: 1e-2 * scale[e] + 1e-6, "fp32 reference: " + label + " (\(i), \(j))")
                } }
                for i in 0..<m { for j in n..<ldc { XCTAssertEqual(fast[i * ldc + j], c0[i * ldc + j], "padding untouched: " + label) } }
            } }
        }
    }

    func cosine(_ x: [Float], _ y: [Float]) -> Double {
        var xy = 0.0, xx = 0.0, yy = 0.0
        for (a, b) in zip(x, y) { xy += Double(a) * Double(b); xx += Double(a) * Double(a); yy += Double(b) * Double(b) }
        return xy / (xx * yy).squareRoot()
    }

    struct Run { var out: [Float], p: [Float], dq: [Float], dk: [Float], dv: [Float] }

    func run(_ s: AttentionShape, _ compute: ComputePrecision, q: [Float], k: [Float], v: [Float], r: [Float], mask: [Float],
             starts: [Int32]?) -> Run {
        var p = [Float](repeating: .nan, count: s.batch * s.heads * s.queryLength * s.keyLength)
        var out = [Float](repeating: 0, count: q.count)
        let segments = starts.map { UnsafeMutableBufferPointer<Int32>.allocate(capacity: $0.count) }
        defer { segments?.deallocate() }
        if let starts, let segments { _ = segments.initialize(from: starts) }
        let segmentStarts = segments.map { UnsafePointer($0.baseAddress!) }
        var lse = [Float](repeating: .nan, count: s.batch * s.heads * s.queryLength)
        Attention.forward(s, q: q, k: k, v: v, keyMask: mask, segmentStarts: segmentStarts, compute: compute, logSumExp: &lse,
                          probabilities: &p, out: &out)
        var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count), dv = dk
        if s.start == 0 {
            Attention.backward(s, dout: r, q: q, k: k, v: v, keyMask: mask, segmentStarts: segmentStarts, compute: compute, logSumExp: lse,
                               dq: &dq, dk: &dk, dv: &dv)
        }
        return Run(out: out, p: p, dq: dq, dk: dk, dv: dv)
    }

    /// Invariant: attention with bf16 tile products gives outputs and dq/dk/dv with cosine ≥ 0.999 to the fp32
    /// path's, and differs from it (the bf16 kernel ran); masked, future and other-sequence keys still get
    /// probability exactly 0. Shapes: several query tiles with a partial last one, padding and a hole in the
    /// mask (head dim 64); packed rows whose tiles start at odd keys with an odd head dim (odd pair grids
    /// both ways); queries continuing a KV cache (forward only); each again with a sliding window; two with soft-capping.
    func testBF16AttentionMatchesFP32ForwardAndBackward() throws {
        try requireBF16Kernel()
        var rng = Rand(s: 22)
        let cases: [(AttentionShape, [Int32]?)] = [
            (AttentionShape(batch: 2, queryLength: 150, keyLength: 150, heads: 4, kvHeads: 2, headDim: 64), nil),
            (AttentionShape(batch: 1, queryLength: 140, keyLength: 140, heads: 2, kvHeads: 1, headDim: 9),
             (0..<140).map { Int32($0 < 37 ? 0 : $0 < 101 ? 37 : 101) }),
            (AttentionShape(batch: 1, queryLength: 70, keyLength: 100, heads: 4, kvHeads: 2, headDim: 64), nil),
            // Sliding windows: inside a tile and across tiles, odd window starts on the pair grid, packed, KV cache.
            (AttentionShape(batch: 2, queryLength: 150, keyLength: 150, heads: 4, kvHeads: 2, headDim: 64, window: 37), nil),
            (AttentionShape(batch: 1, queryLength: 140, keyLength: 140, heads: 2, kvHeads: 1, headDim: 9, window: 24),
             (0..<140).map { Int32($0 < 37 ? 0 : $0 < 101 ? 37 : 101) }),
            (AttentionShape(batch: 1, queryLength: 70, keyLength: 100, heads: 4, kvHeads: 2, headDim: 64, window: 51), nil),
            // Soft-capped scores (Gemma 2): the backward recomputes the capped tile with the bf16 product too.
            (AttentionShape(batch: 2, queryLength: 150, keyLength: 150, heads: 4, kvHeads: 2, headDim: 64, window: 37, softcap: 5), nil),
            (AttentionShape(batch: 1, queryLength: 140, keyLength: 140, heads: 2, kvHeads: 1, headDim: 9, softcap: 2),
             (0..<140).map { Int32($0 < 37 ? 0 : $0 < 101 ? 37 : 101) }),
        ]
        for (s, starts) in cases {
            let (B, Tq, Tk) = (s.batch, s.queryLength, s.keyLength)
            let q = rng.array(B * Tq * s.heads * s.headDim).map { $0 * 3 }, r = rng.array(q.count)
            let k = rng.array(B * Tk * s.kvHeads * s.headDim).map { $0 * 3 }, v = rng.array(k.count)
            var mask = [Float](repeating: 1, count: B * Tk)
            if B == 2 { for j in 0..<20 { mask[Tk + j] = 0 }; mask[3] = 0 }
            let reference = run(s, .fp32, q: q, k: k, v: v, r: r, mask: mask, starts: starts)
            let bf16 = run(s, .bf16, q: q, k: k, v: v, r: r, mask: mask, starts: starts)
            let label = "B=\(B) Tq=\(Tq) Tk=\(Tk) D=\(s.headDim) packed \(starts != nil)"
            XCTAssertGreaterThanOrEqual(cosine(bf16.out, reference.out), 0.999, "out: " + label)
            XCTAssertNotEqual(bf16.out, reference.out, "the bf16 kernel ran: " + label)
            let zeros = reference.p.indices.filter { reference.p[$0] == 0 }
            XCTAssertGreaterThan(zeros.count, 0)
            XCTAssertEqual(zeros.filter { bf16.p[$0] != 0 }.count, 0, "masked probabilities stay exactly 0: " + label)
            guard s.start == 0 else { continue }
            XCTAssertGreaterThanOrEqual(cosine(bf16.dq, reference.dq), 0.999, "dq: " + label)
            XCTAssertGreaterThanOrEqual(cosine(bf16.dk, reference.dk), 0.999, "dk: " + label)
            XCTAssertGreaterThanOrEqual(cosine(bf16.dv, reference.dv), 0.999, "dv: " + label)
        }
    }
}
