// The fast paths against slow references: vectorised exp / log-sum-exp / SwiGLU / softmax rows against libm in
// Double (Swift's lanes and the AVX-512 loops), and the tiled attention (several query tiles, a partial last
// tile, a KV-cache offset, padding) against a naive triple loop, plus a finite-difference check of the tiled
// backward across tile boundaries.
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

    /// Invariant: log-sum-exp and the in-place softmax agree with a Double reference on a vocabulary-sized row
    /// (both paths of the row loops).
    func testLogSumExpAndSoftmaxMatchDoubleReference() {
        var rng = Rand(s: 11)
        let row = rng.array(49_157).map { $0 * 12 }
        let m = Double(row.max()!)
        let sum = row.reduce(0.0) { $0 + Foundation.exp(Double($1) - m) }
        let reference = m + Foundation.log(sum)
        onBothVectorPaths { path in
            XCTAssertEqual(row.withUnsafeBufferPointer { Softmax.logSumExp($0.baseAddress!, count: row.count) }, reference, accuracy: 1e-6, path)
            var probabilities = row
            let lse = probabilities.withUnsafeMutableBufferPointer { Softmax.softmaxInPlace($0.baseAddress!, count: row.count, factor: 0.5) }
            XCTAssertEqual(lse, reference, accuracy: 1e-6, path)
            for i in stride(from: 0, to: row.count, by: 97) {
                XCTAssertEqual(Double(probabilities[i]), 0.5 * Foundation.exp(Double(row[i]) - reference), accuracy: 1e-9, path)
            }
        }
    }

    /// Runs body on both paths of VectorMath's row loops: AVX-512 (where the CPU has it) and Swift's lanes.
    func onBothVectorPaths(_ body: (String) -> Void) {
        let saved = VectorMath.usesAVX512
        defer { VectorMath.usesAVX512 = saved }
        for avx512 in Set([saved, false]) {
            VectorMath.usesAVX512 = avx512
            body(avx512 ? "AVX-512" : "Swift lanes")
        }
    }

    /// Invariant: on both paths the row loops agree with Double references: exp-shift-sum within 2 ulp
    /// (relative 2.4e-7) of exp per element over softmax's range (vector tail included) and its sum within
    /// 1e-5, max exact, scale exact, dot within 1e-6 of Σ|x·y|, and the softmax backward row
    /// p·(d − Σp·d)·scale within 1e-6.
    func testRowLoopsMatchDoubleReferenceOnBothPaths() {
        var rng = Rand(s: 16)
        let x = stride(from: Float(-80), to: 80, by: 0.0371).map { $0 }   // 4313 values: not a multiple of 16
        let y = rng.array(x.count), p = rng.array(x.count).map { abs($0) / 2000 }
        onBothVectorPaths { path in
            var e = [Float](repeating: 0, count: x.count)
            let sum = VectorMath.expShifted(x, shift: 1.5, into: &e, count: x.count)
            var worst = 0.0, total = 0.0
            for i in x.indices {
                let exact = Foundation.exp(Double(x[i] - 1.5))   // the shift is subtracted in fp32
                worst = max(worst, abs(Double(e[i]) - exact) / exact)
                total += exact
            }
            XCTAssertLessThan(worst, 2.4e-7, path)
            XCTAssertEqual(Double(sum), total, accuracy: 1e-5 * total, path)
            XCTAssertEqual(VectorMath.max(y, count: y.count), y.max()!, path)
            XCTAssertEqual(VectorMath.max(y, count: 0), -.infinity, path)
            var scaled = y
            VectorMath.scale(&scaled, by: 0.3, count: y.count)
            XCTAssertEqual(scaled, y.map { $0 * 0.3 }, path)
            let dot = zip(x, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            let magnitude = zip(x, y).reduce(0.0) { $0 + abs(Double($1.0) * Double($1.1)) }
            XCTAssertEqual(Double(VectorMath.dot(x, y, count: x.count)), dot, accuracy: 1e-6 * magnitude, path)
            var d = y
            VectorMath.softmaxBackward(p, &d, scale: 0.125, count: p.count)
            let pd = zip(p, y).reduce(0.0) { $0 + Double($1.0) * Double($1.1) }
            for i in p.indices {
                XCTAssertEqual(Double(d[i]), Double(p[i]) * (Double(y[i]) - pd) * 0.125, accuracy: 1e-6, "\(path) softmax backward \(i)")
            }
        }
    }

    /// Invariant: vectorised SwiGLU forward and backward (including the vector tail), on both paths, equal
    /// h = silu(g)·u (within 5e-7) and dgate = dh·u·σ(g)·(1 + g·(1 − σ(g))), dup = dh·silu(g) (within 2e-6,
    /// the fp32 formula's own rounding) computed in Double.
    func testSwiGLUMatchesScalarReference() {
        var rng = Rand(s: 12)
        let n = 16_387   // not a multiple of the vector width, and split across workers
        let gate = rng.array(n).map { $0 * 9 }, up = rng.array(n), dh = rng.array(n)
        onBothVectorPaths { path in
            var h = [Float](repeating: 0, count: n), dgate = h, dup = h
            SwiGLU.forward(gate: gate, up: up, &h, count: n)
            SwiGLU.backward(dh, gate: gate, up: up, dgate: &dgate, dup: &dup, count: n)
            for i in 0..<n {
                let g = Double(gate[i]), sig = 1 / (1 + Foundation.exp(-g))
                let reference = g * sig * Double(up[i])
                XCTAssertEqual(Double(h[i]), reference, accuracy: 5e-7 * max(1, abs(reference)), "\(path) h[\(i)]")
                let dg = Double(dh[i]) * Double(up[i]) * sig * (1 + g * (1 - sig)), du = Double(dh[i]) * g * sig
                XCTAssertEqual(Double(dgate[i]), dg, accuracy: 2e-6 * max(1, abs(dg)), "\(path) dgate[\(i)]")
                XCTAssertEqual(Double(dup[i]), du, accuracy: 2e-6 * max(1, abs(du)), "\(path) dup[\(i)]")
            }
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
        var lse = [Float](repeating: 0, count: 2 * T), out = [Float](repeating: 0, count: q.count)
        Attention.forward(s, q: q, k: k, v: v, keyMask: mask, compute: .fp32, logSumExp: &lse, out: &out)
        var dq = [Float](repeating: 0, count: q.count), dk = [Float](repeating: 0, count: k.count), dv = dk
        Attention.backward(s, dout: r, q: q, k: k, v: v, keyMask: mask, compute: .fp32, logSumExp: lse, dq: &dq, dk: &dk, dv: &dv)
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
