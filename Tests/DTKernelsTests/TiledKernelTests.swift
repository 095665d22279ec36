// The fast paths against slow references: vectorised exp / log-sum-exp / SwiGLU against libm in Double,
// and the tiled attention (several query tiles, a partial last tile, a KV-cache offset, padding) against a
// naive triple loop, plus a finite-difference check of the tiled backward across tile boundaries.
import DTKernels
import Foundation
import XCTest

final class TiledKernelTests: XCTestCase {
    /// Invariant: VectorMath.exp is within 2 ulp (relative 2.4e-7) of exp over the range softmax and SiLU use.
    func testVectorExpMatchesLibm() {
        var worst: Double = 0
        var x: Float = -87
        while x < 88 {
            let lanes = VectorMath.exp(VectorMath.Lanes((0..<8).map { x + Float($0) * 0.001 }))
            for lane in 0..<8 {
                let exact = Foundation.exp(Double(x + Float(lane) * 0.001))
                worst = max(worst, abs(Double(lanes[lane]) - exact) / exact)
            }
            x += 0.0137
        }
        XCTAssertLessThan(worst, 2.4e-7)
        XCTAssertEqual(VectorMath.exp(VectorMath.Lanes(repeating: -.infinity))[0], 0, accuracy: 1e-37)
    }

    /// Invariant: log-sum-exp and the in-place softmax agree with a Double reference on a vocabulary-sized row.
    func testLogSumExpAndSoftmaxMatchDoubleReference() {
        var rng = Rand(s: 11)
        let row = rng.array(49_157).map { $0 * 12 }
        let m = Double(row.max()!)
        let sum = row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) }
        let reference = m + Foundation.log(sum)
        XCTAssertEqual(row.withUnsafeBufferPointer { Softmax.logSumExp($0.baseAddress!, count: row.count) }, reference, accuracy: 1e-6)
        var probabilities = row
        let lse = probabilities.withUnsafeMutableBufferPointer { Softmax.softmaxInPlace($0.baseAddress!, count: row.count, factor: 0.5) }
        XCTAssertEqual(lse, reference, accuracy: 1e-6)
        for i in stride(from: 0, to: row.count, by: 97) {
            XCTAssertEqual(Double(probabilities[i]), 0.5 * Foundation.exp(Double(row[i]) - reference), accuracy: 1e-9)
        }
    }

    /// Invariant: vectorised SwiGLU (including the scalar tail) equals silu(g)·u computed in Double.
    func testSwiGLUMatchesScalarReference() {
        var rng = Rand(s: 12)
        let n = 16_387   // not a multiple of the vector width, and split across workers
        let gate = rng.array(n).map { $0 * 9 }, up = rng.array(n)
        var h = [Float](repeating: 0, count: n)
        SwiGLU.forward(gate: gate, up: up, &h, count: n)
        for i in 0..<n {
            let g = Double(gate[i])
            let reference = g / (1 + Foundation.exp(-g)) * Double(up[i])
            XCTAssertEqual(Double(h[i]), reference, accuracy: 5e-7 * max(1, abs(reference)))
        }
    }

    /// Naive attention in Double: causal from `start`, padded keys excluded, rows without a key are 0.
    func naiveAttention(_ s: AttentionShape, q: [Float], k: [Float], v: [Float], mask: [Float]?) -> [Float] {
        let (Tq, Tk, H, D, K) = (s.queryLength, s.keyLength, s.heads, s.headDim, s.kvHeads)
        var out = [Float](repeating: 0, count: s.batch * Tq * H * D)
        for b in 0..<s.batch { for h in 0..<H { for t in 0..<Tq {
            let kvh = h / (H / K)
            var scores = [Double](repeating: -.infinity, count: Tk)
            for j in 0...(s.start + t) where (mask?[b * Tk + j] ?? 1) != 0 {
                var d = 0.0
                for i in 0..<D { d += Double(q[((b * Tq + t) * H + h) * D + i]) * Double(k[((b * Tk + j) * K + kvh) * D + i]) }
                scores[j] = d / Double(D).squareRoot()
            }
            let m = scores.max()!
            guard m > -.infinity else { continue }
            let e = scores.map { Foundation.exp($0 - m) }, z = e.reduce(0, +)
            for i in 0..<D {
                var acc = 0.0
                for j in 0..<Tk { acc += e[j] / z * Double(v[((b * Tk + j) * K + kvh) * D + i]) }
                out[((b * Tq + t) * H + h) * D + i] = Float(acc)
            }
        } } }
        return out
    }

    /// Invariant: the tiled forward equals naive attention for 3 tiles with a partial last one (with padding)
    /// and for queries continuing a KV cache (start > 0, tiles offset from the cache).
    func testTiledAttentionMatchesNaive() {
        let saved = Attention.usesSmallKernel
        defer { Attention.usesSmallKernel = saved }
        for kernel in [saved, false] {   // the AVX-512 tile kernel (where the CPU has it) and the OpenBLAS path
            Attention.usesSmallKernel = kernel
            checkTiledAttentionMatchesNaive()
        }
    }

    func checkTiledAttentionMatchesNaive() {
        var rng = Rand(s: 13)
        for (batch, tq, tk) in [(2, 150, 150), (1, 70, 100)] {
            let s = AttentionShape(batch: batch, queryLength: tq, keyLength: tk, heads: 4, kvHeads: 2, headDim: 8)
            let q = rng.array(batch * tq * 4 * 8), k = rng.array(batch * tk * 2 * 8), v = rng.array(batch * tk * 2 * 8)
            var mask = [Float](repeating: 1, count: batch * tk)
            if batch == 2 { for j in 0..<20 { mask[tk + j] = 0 }; mask[3] = 0 }   // left padding in sample 1, one hole in sample 0
            var p = [Float](repeating: .nan, count: batch * 4 * tq * tk), out = [Float](repeating: 0, count: q.count)
            Attention.forward(s, q: q, k: k, v: v, keyMask: mask, compute: .fp32, probabilities: &p, out: &out)
            let reference = naiveAttention(s, q: q, k: k, v: v, mask: mask)
            XCTAssertLessThan(zip(out, reference).map { abs($0 - $1) }.max()!, 1e-5, "B=\(batch) Tq=\(tq) Tk=\(tk)")
            XCTAssertFalse(p.contains { $0.isNaN }, "every probability entry, masked ones included, must be written")
        }
    }

    /// Invariant: the tiled backward matches finite differences when T spans two tiles (a gradient that
    /// crosses the tile boundary through dK/dV); sampled coordinates of q, k and v.
    func testTiledAttentionBackwardAcrossTiles() {
        let saved = Attention.usesSmallKernel
        defer { Attention.usesSmallKernel = saved }
        for kernel in [saved, false] {
            Attention.usesSmallKernel = kernel
            checkTiledAttentionBackwardAcrossTiles()
        }
    }

    func checkTiledAttentionBackwardAcrossTiles() {
        var rng = Rand(s: 14)
        let T = Attention.tile + 9
        let s = AttentionShape(batch: 1, queryLength: T, keyLength: T, heads: 2, kvHeads: 1, headDim: 4)
        let q = rng.array(T * 8), k = rng.array(T * 4), v = rng.array(T * 4), r = rng.array(T * 8)
        let mask = [Float](repeating: 1, count: T)
        func f(_ q: [Float], _ k: [Float], _ v: [Float]) -> Double {
            var p = [Float](repeating: 0, count: 2 * T * T), out = [Float](repeating: 0, count: q.count)
            Attention.forward(s, q: q, k: k, v: v, keyMask: mask, compute: .fp32, probabilities: &p, out: &out)
            return out.indices.reduce(0.0) { $0 + Double(out[$1]) * Double(r[$1]) }
        }
        var p = [Float](repeating: 0, count: 2 * T * T), out = [Float](repeating: 0, count: q.count)
        Attention.forward(s, q: q, k: k, v: v, keyMask: mask, compute: .fp32, probabilities: &p, out: &out)
        var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count), dv = dk
        var scratch = [Float](repeating: 0, count: 2 * T * T)
        Attention.backward(s, dout: r, q: q, k: k, v: v, compute: .fp32, probabilities: p, dq: &dq, dk: &dk, dv: &dv, scratch: &scratch)
        func check(_ x: [Float], _ analytic: [Float], _ name: String, _ eval: ([Float]) -> Double) {
            for i in stride(from: 1, to: x.count, by: 7) {
                var plus = x, minus = x
                plus[i] += 1e-2; minus[i] -= 1e-2
                let numeric = (eval(plus) - eval(minus)) / 2e-2
                XCTAssertEqual(Double(analytic[i]), numeric, accuracy: 2e-3 * max(1, abs(numeric)), "d\(name)[\(i)]")
            }
        }
        check(q, dq, "q") { f($0, k, v) }
        check(k, dk, "k") { f(q, $0, v) }
        check(v, dv, "v") { f(q, k, $0) }
    }

    /// Invariant: the register-blocked tile product equals the naive product for A read directly and
    /// transposed (through its strides), with and without accumulation, for sizes off the 6 × 64 block grid.
    func testTileProductMatchesNaiveReference() throws {
        guard Attention.usesSmallKernel else { throw XCTSkip("no AVX-512F: attention uses OpenBLAS") }
        var rng = Rand(s: 15)
        for (m, n, k) in [(1, 1, 1), (5, 17, 3), (64, 64, 64), (7, 200, 64), (130, 64, 190), (6, 65, 2)] {
            for transposedA in [false, true] { for accumulate in [false, true] {
                let lda = (transposedA ? m : k) + 3, ldb = n + 5, ldc = n + 2
                let a = rng.array((transposedA ? k : m) * lda), b = rng.array(k * ldb)
                var fast = rng.array(m * ldc), reference = fast
                Attention.product(m: m, n: n, k: k, alpha: 0.75, a: a, aRow: transposedA ? 1 : lda, aCol: transposedA ? lda : 1,
                                  b: b, ldb: ldb, accumulate: accumulate, c: &fast, ldc: ldc)
                BLAS.naiveGemm(transposedA ? .trans : .noTrans, .noTrans, m: m, n: n, k: k, alpha: 0.75, a: a, lda: lda,
                               b: b, ldb: ldb, beta: accumulate ? 1 : 0, c: &reference, ldc: ldc)
                for i in 0..<m { for j in 0..<ldc {
                    XCTAssertEqual(fast[i * ldc + j], reference[i * ldc + j], accuracy: j < n ? 1e-5 * Float(k) : 0,
                                   "\(m)x\(n)x\(k) transposed \(transposedA) accumulate \(accumulate) (\(i), \(j))")
                } }
            } }
        }
    }
}
