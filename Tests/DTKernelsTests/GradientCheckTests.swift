// Finite-difference checks of every layer backward in DTKernels: loss = Σ y·r for a fixed random r, the
// analytic input gradient against central differences, relative error ‖g − g_fd‖ / ‖g_fd‖ ≤ 1e-3.
import DTKernels
import XCTest

struct Rand {
    var s: UInt64
    mutating func next() -> Float { s = s &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: s >> 11) % 20000) / 10000 - 1 }
    mutating func array(_ n: Int) -> [Float] { (0..<n).map { _ in next() } }
}

/// Central-difference gradient of f at x (f evaluated in Double from Float outputs).
func numericGradient(_ x: [Float], eps: Float = 1e-2, _ f: ([Float]) -> Double) -> [Float] {
    var g = [Float](repeating: 0, count: x.count)
    var xp = x
    for i in 0..<x.count {
        xp[i] = x[i] + eps; let up = f(xp)
        xp[i] = x[i] - eps; let down = f(xp)
        xp[i] = x[i]
        g[i] = Float((up - down) / Double(2 * eps))
    }
    return g
}

func relativeError(_ a: [Float], _ b: [Float]) -> Float {
    var diff: Float = 0, norm: Float = 0
    for (x, y) in zip(a, b) { diff += (x - y) * (x - y); norm += y * y }
    return (diff / max(norm, 1e-20)).squareRoot()
}

func dot(_ y: [Float], _ r: [Float]) -> Double { zip(y, r).reduce(0.0) { $0 + Double($1.0) * Double($1.1) } }

final class GradientCheckTests: XCTestCase {
    func testRMSNormBackward() {
        for channels in [8, 19] { checkRMSNorm(channels: channels) }   // 19: vector lanes and a scalar tail
    }

    func checkRMSNorm(channels: Int) {
        var rng = Rand(s: 1)
        let rows = 3
        let x = rng.array(rows * channels), w = rng.array(channels).map { $0 + 1.5 }, r = rng.array(rows * channels)
        func forward(_ x: [Float]) -> [Float] {
            var y = [Float](repeating: 0, count: x.count), rstd = [Float](repeating: 0, count: rows)
            RMSNorm.forward(x, w, &y, rstd: &rstd, rows: rows, channels: channels, eps: 1e-5)
            return y
        }
        var rstd = [Float](repeating: 0, count: rows), y = [Float](repeating: 0, count: x.count)
        RMSNorm.forward(x, w, &y, rstd: &rstd, rows: rows, channels: channels, eps: 1e-5)
        var dx = [Float](repeating: 0, count: x.count)
        RMSNorm.backward(r, x, w, rstd: rstd, &dx, rows: rows, channels: channels)
        let fd = numericGradient(x, eps: 1e-3) { dot(forward($0), r) }
        XCTAssertLessThan(relativeError(dx, fd), 1e-3)
    }

    func testSwiGLUBackward() {
        var rng = Rand(s: 2)
        let n = 20
        let g = rng.array(n).map { $0 * 3 }, u = rng.array(n), r = rng.array(n)
        func f(_ g: [Float], _ u: [Float]) -> Double {
            var h = [Float](repeating: 0, count: n); SwiGLU.forward(gate: g, up: u, &h, count: n); return dot(h, r)
        }
        var dg = [Float](repeating: 0, count: n), du = dg
        SwiGLU.backward(r, gate: g, up: u, dgate: &dg, dup: &du, count: n)
        XCTAssertLessThan(relativeError(dg, numericGradient(g, eps: 1e-3) { f($0, u) }), 1e-3)
        XCTAssertLessThan(relativeError(du, numericGradient(u, eps: 1e-3) { f(g, $0) }), 1e-3)
    }

    func testGeGLUBackward() {
        var rng = Rand(s: 8)
        let n = 20
        let g = rng.array(n).map { $0 * 3 }, u = rng.array(n), r = rng.array(n)
        func f(_ g: [Float], _ u: [Float]) -> Double {
            var h = [Float](repeating: 0, count: n); GeGLU.forward(gate: g, up: u, &h, count: n); return dot(h, r)
        }
        var dg = [Float](repeating: 0, count: n), du = dg
        GeGLU.backward(r, gate: g, up: u, dgate: &dg, dup: &du, count: n)
        XCTAssertLessThan(relativeError(dg, numericGradient(g, eps: 1e-3) { f($0, u) }), 1e-3)
        XCTAssertLessThan(relativeError(du, numericGradient(u, eps: 1e-3) { f(g, $0) }), 1e-3)
        // Golden values of torch.nn.functional.gelu(x, approximate="tanh") (x = −3, −0.5, 0.7, 2.5), up = 1.
        var h = [Float](repeating: 0, count: 4)
        GeGLU.forward(gate: [-3, -0.5, 0.7, 2.5], up: [1, 1, 1, 1], &h, count: 4)
        for (x, y) in zip(h, [-0.00363739, -0.15428599, 0.53057013, 2.48491573] as [Float]) { XCTAssertEqual(x, y, accuracy: 2e-6) }
    }

    /// Invariant: RoPE is a rotation, so its backward (the inverse rotation) is exact.
    func testRoPEInverseUndoesForward() {
        var rng = Rand(s: 3)
        let table = RoPETable(headDim: 8, maxPositions: 16, inverseFrequencies: (0..<4).map { pow(10000, -Float(2 * $0) / 8) })
        let x = rng.array(5 * 2 * 8)
        var y = x
        let positions: [Int32] = [0, 3, 7, 11, 15]
        table.apply(&y, rows: 5, heads: 2, positions: positions)
        XCTAssertGreaterThan(relativeError(y, x), 0.1)
        table.apply(&y, rows: 5, heads: 2, positions: positions, inverse: true)
        XCTAssertLessThan(relativeError(y, x), 1e-6)
    }

    /// Attention backward (GQA: 4 query heads over 2 kv heads, causal, batch 2) against finite differences
    /// for q, k and v — the backward recomputing the probabilities from the forward's log-sum-exp.
    func testAttentionBackward() {
        var rng = Rand(s: 4)
        let s = AttentionShape(batch: 2, queryLength: 5, keyLength: 5, heads: 4, kvHeads: 2, headDim: 4)
        let qn = 2 * 5 * 4 * 4, kn = 2 * 5 * 2 * 4
        let q = rng.array(qn), k = rng.array(kn), v = rng.array(kn), r = rng.array(qn)
        let mask = [Float](repeating: 1, count: 10)
        func f(_ q: [Float], _ k: [Float], _ v: [Float]) -> Double {
            var p = [Float](repeating: 0, count: 2 * 4 * 25), out = [Float](repeating: 0, count: qn)
            Attention.forward(s, q: q, k: k, v: v, keyMask: mask, compute: .fp32, probabilities: &p, out: &out)
            return dot(out, r)
        }
        var lse = [Float](repeating: 0, count: 2 * 4 * 5), out = [Float](repeating: 0, count: qn)
        Attention.forward(s, q: q, k: k, v: v, keyMask: mask, compute: .fp32, logSumExp: &lse, out: &out)
        var dq = [Float](repeating: 0, count: qn), dk = [Float](repeating: 0, count: kn), dv = dk
        Attention.backward(s, dout: r, q: q, k: k, v: v, keyMask: mask, compute: .fp32, logSumExp: lse, dq: &dq, dk: &dk, dv: &dv)
        XCTAssertLessThan(relativeError(dq, numericGradient(q, eps: 1e-3) { f($0, k, v) }), 1e-3)
        XCTAssertLessThan(relativeError(dk, numericGradient(k, eps: 1e-3) { f(q, $0, v) }), 1e-3)
        XCTAssertLessThan(relativeError(dv, numericGradient(v, eps: 1e-3) { f(q, k, $0) }), 1e-3)
    }

    /// Invariant: padded keys get zero attention and a query sees no future key.
    func testAttentionMaskAndCausality() {
        let s = AttentionShape(batch: 1, queryLength: 4, keyLength: 4, heads: 1, kvHeads: 1, headDim: 2)
        var rng = Rand(s: 5)
        let q = rng.array(8), k = rng.array(8), v = rng.array(8)
        var p = [Float](repeating: 0, count: 16), out = [Float](repeating: 0, count: 8)
        Attention.forward(s, q: q, k: k, v: v, keyMask: [1, 0, 1, 1], compute: .fp32, probabilities: &p, out: &out)
        for t in 0..<4 {
            XCTAssertEqual(p[t * 4 + 1], 0, "padded key 1 must get no weight")
            for j in (t + 1)..<4 { XCTAssertEqual(p[t * 4 + j], 0, "query \(t) must not see key \(j)") }
            XCTAssertEqual(p[(t * 4)..<(t * 4 + 4)].reduce(0, +), 1, accuracy: 1e-6)
        }
    }

    /// The slow reference: each query's softmax over the keys it may see (mask 1, from its segment's start,
    /// within the window, not after itself), written out loop by loop. out (B, Tq, H·D).
    func naiveAttention(_ s: AttentionShape, q: [Float], k: [Float], v: [Float], mask: [Float], starts: [Int32]?) -> [Float] {
        let (B, Tq, Tk, H, K, D) = (s.batch, s.queryLength, s.keyLength, s.heads, s.kvHeads, s.headDim)
        var out = [Float](repeating: 0, count: B * Tq * H * D)
        for b in 0..<B { for h in 0..<H { for t in 0..<Tq {
            let i = s.start + t, kvh = h / (H / K)
            let from = max(starts.map { Int($0[b * Tq + t]) } ?? 0, s.window.map { i - $0 + 1 } ?? 0)
            let keys = (max(from, 0)...i).filter { mask[b * Tk + $0] != 0 }
            guard !keys.isEmpty else { continue }
            let scores = keys.map { j in
                (0..<D).reduce(0.0) { $0 + Double(q[((b * Tq + t) * H + h) * D + $1]) * Double(k[((b * Tk + j) * K + kvh) * D + $1]) } * Double(s.scale ?? 1 / Float(D).squareRoot())
            }
            let capped = s.softcap.map { cap in scores.map { Double(cap) * tanh($0 / Double(cap)) } } ?? scores
            let m = capped.max()!, e = capped.map { exp($0 - m) }, z = e.reduce(0, +)
            for (n, j) in keys.enumerated() { for d in 0..<D {
                out[((b * Tq + t) * H + h) * D + d] += Float(e[n] / z) * v[((b * Tk + j) * K + kvh) * D + d]
            } }
        } } }
        return out
    }

    /// Invariant: with a sliding window W, query i attends exactly to keys i − W < j ≤ i (and the key mask,
    /// packing segments and a KV cache's past still apply): equal to the naive loop, on windows inside one
    /// query tile and across tiles (T > 64), packed rows, padding, a KV-cache continuation, and W ≥ T (no effect).
    func testSlidingWindowAttentionMatchesNaive() {
        var rng = Rand(s: 6)
        let cases: [(AttentionShape, [Int32]?)] = [
            (AttentionShape(batch: 2, queryLength: 9, keyLength: 9, heads: 4, kvHeads: 2, headDim: 4, window: 3), nil),
            (AttentionShape(batch: 1, queryLength: 150, keyLength: 150, heads: 2, kvHeads: 1, headDim: 8, window: 37), nil),
            (AttentionShape(batch: 1, queryLength: 150, keyLength: 150, heads: 2, kvHeads: 2, headDim: 5, window: 20),
             (0..<150).map { Int32($0 < 37 ? 0 : $0 < 101 ? 37 : 101) }),
            (AttentionShape(batch: 1, queryLength: 3, keyLength: 40, heads: 4, kvHeads: 2, headDim: 4, window: 7), nil),
            (AttentionShape(batch: 1, queryLength: 70, keyLength: 100, heads: 2, kvHeads: 1, headDim: 8, window: 45), nil),
            (AttentionShape(batch: 1, queryLength: 6, keyLength: 6, heads: 1, kvHeads: 1, headDim: 4, window: 100), nil),
            (AttentionShape(batch: 1, queryLength: 9, keyLength: 9, heads: 2, kvHeads: 1, headDim: 4, window: 4, scale: 0.3), nil),
            // soft-capped scores (Gemma 2): across tiles, packed, and continuing a KV cache
            (AttentionShape(batch: 1, queryLength: 150, keyLength: 150, heads: 2, kvHeads: 1, headDim: 8, window: 37, softcap: 1.5), nil),
            (AttentionShape(batch: 1, queryLength: 150, keyLength: 150, heads: 2, kvHeads: 2, headDim: 5, window: 150, softcap: 0.8),
             (0..<150).map { Int32($0 < 37 ? 0 : $0 < 101 ? 37 : 101) }),
            (AttentionShape(batch: 1, queryLength: 3, keyLength: 40, heads: 4, kvHeads: 2, headDim: 4, window: 7, softcap: 2), nil),
        ]
        for (s, starts) in cases {
            let q = rng.array(s.batch * s.queryLength * s.heads * s.headDim).map { $0 * 2 }
            let k = rng.array(s.batch * s.keyLength * s.kvHeads * s.headDim).map { $0 * 2 }, v = rng.array(k.count)
            var mask = [Float](repeating: 1, count: s.batch * s.keyLength)
            if s.batch == 2 { for j in 6..<9 { mask[9 + j] = 0 } }
            let segments = starts.map { UnsafeMutableBufferPointer<Int32>.allocate(capacity: $0.count) }
            defer { segments?.deallocate() }
            if let starts, let segments { _ = segments.initialize(from: starts) }
            var p = [Float](repeating: .nan, count: s.batch * s.heads * s.queryLength * s.keyLength), out = [Float](repeating: 0, count: q.count)
            Attention.forward(s, q: q, k: k, v: v, keyMask: mask, segmentStarts: segments.map { UnsafePointer($0.baseAddress!) },
                              compute: .fp32, probabilities: &p, out: &out)
            let expected = naiveAttention(s, q: q, k: k, v: v, mask: mask, starts: starts)
            XCTAssertLessThan(relativeError(out, expected), 1e-5,
                              "T=\(s.queryLength)/\(s.keyLength) W=\(s.window!) packed \(starts != nil) cap \(s.softcap ?? 0)")
            if let cap = s.softcap {   // the cap must change the result, or this case would not test it
                var uncapped = s; uncapped.softcap = nil
                XCTAssertGreaterThan(relativeError(naiveAttention(uncapped, q: q, k: k, v: v, mask: mask, starts: starts), expected), 1e-2, "cap \(cap)")
            }
            for row in 0..<(s.heads * s.queryLength) {   // nothing before the window
                let t = row % s.queryLength, i = s.start + t
                for j in 0..<max(0, i - s.window! + 1) { XCTAssertEqual(p[row * s.keyLength + j], 0) }
            }
        }
    }

    /// Sliding-window attention backward (window 3 over 7 tokens, GQA, batch 2, one sequence padded, a score
    /// scale other than 1/√D) against finite differences for q, k and v.
    func testSlidingWindowAttentionBackward() {
        var rng = Rand(s: 7)
        let s = AttentionShape(batch: 2, queryLength: 7, keyLength: 7, heads: 4, kvHeads: 2, headDim: 4, window: 3, scale: 0.7)
        let qn = 2 * 7 * 4 * 4, kn = 2 * 7 * 2 * 4
        let q = rng.array(qn), k = rng.array(kn), v = rng.array(kn), r = rng.array(qn)
        var mask = [Float](repeating: 1, count: 14)
        mask[12] = 0; mask[13] = 0
        func f(_ q: [Float], _ k: [Float], _ v: [Float]) -> Double {
            var p = [Float](repeating: 0, count: 2 * 4 * 49), out = [Float](repeating: 0, count: qn)
            Attention.forward(s, q: q, k: k, v: v, keyMask: mask, compute: .fp32, probabilities: &p, out: &out)
            return dot(out, r)
        }
        var lse = [Float](repeating: 0, count: 2 * 4 * 7), out = [Float](repeating: 0, count: qn)
        Attention.forward(s, q: q, k: k, v: v, keyMask: mask, compute: .fp32, logSumExp: &lse, out: &out)
        var dq = [Float](repeating: 0, count: qn), dk = [Float](repeating: 0, count: kn), dv = dk
        Attention.backward(s, dout: r, q: q, k: k, v: v, keyMask: mask, compute: .fp32, logSumExp: lse, dq: &dq, dk: &dk, dv: &dv)
        XCTAssertLessThan(relativeError(dq, numericGradient(q, eps: 1e-3) { f($0, k, v) }), 1e-3)
        XCTAssertLessThan(relativeError(dk, numericGradient(k, eps: 1e-3) { f(q, $0, v) }), 1e-3)
        XCTAssertLessThan(relativeError(dv, numericGradient(v, eps: 1e-3) { f(q, k, $0) }), 1e-3)
    }

    /// Invariant: soft-capping is cap · tanh(x / cap) (golden values: torch.tanh in float64, cap 30) and its backward from the
    /// capped values, 1 − (y / cap)², matches finite differences.
    func testSoftCapBackward() {
        var x: [Float] = [-40, -2, 0.5, 3, 100]
        SoftCap.forward(&x, count: 5, cap: 30)
        for (y, want) in zip(x, [-26.1018499, -1.99704230, 0.499953709, 2.99003984, 29.9237390] as [Float]) { XCTAssertEqual(y, want, accuracy: 2e-5) }
        var rng = Rand(s: 9)
        let input = rng.array(16).map { $0 * 4 }, r = rng.array(16)
        func f(_ v: [Float]) -> Double { var y = v; SoftCap.forward(&y, count: y.count, cap: 1.7); return dot(y, r) }
        var y = input; SoftCap.forward(&y, count: 16, cap: 1.7)
        var d = r; SoftCap.backward(&d, capped: y, count: 16, cap: 1.7)
        XCTAssertLessThan(relativeError(d, numericGradient(input, eps: 1e-3, f)), 1e-3)
    }

    /// Invariant: soft-capped attention's backward (cap 0.9 on scores of about ±3, window 40 over 70 tokens: two
    /// query tiles, GQA, one row padded) matches finite differences for q, k and v.
    func testSoftCappedAttentionBackward() {
        var rng = Rand(s: 10)
        let s = AttentionShape(batch: 2, queryLength: 70, keyLength: 70, heads: 2, kvHeads: 1, headDim: 4, window: 40, scale: 0.9, softcap: 0.9)
        let qn = 2 * 70 * 2 * 4, kn = 2 * 70 * 1 * 4, pn = 2 * 2 * 70 * 70
        let q = rng.array(qn).map { $0 * 2 }, k = rng.array(kn).map { $0 * 2 }, v = rng.array(kn), r = rng.array(qn)
        var mask = [Float](repeating: 1, count: 140)
        for j in 130..<140 { mask[j] = 0 }
        func f(_ q: [Float], _ k: [Float], _ v: [Float]) -> Double {
            var p = [Float](repeating: 0, count: pn), out = [Float](repeating: 0, count: qn)
            Attention.forward(s, q: q, k: k, v: v, keyMask: mask, compute: .fp32, probabilities: &p, out: &out)
            return dot(out, r)
        }
        var lse = [Float](repeating: 0, count: 2 * 2 * 70), out = [Float](repeating: 0, count: qn)
        Attention.forward(s, q: q, k: k, v: v, keyMask: mask, compute: .fp32, logSumExp: &lse, out: &out)
        var dq = [Float](repeating: 0, count: qn), dk = [Float](repeating: 0, count: kn), dv = dk
        Attention.backward(s, dout: r, q: q, k: k, v: v, keyMask: mask, compute: .fp32, logSumExp: lse, dq: &dq, dk: &dk, dv: &dv)
        // fp32 rounding, not truncation, limits these differences (measured: dk 1.2e-3 at h = 1e-3, 1.5e-4 at 8e-3,
        // dq flat at 5.5e-5 from 4e-3 to 8e-3), so the step is larger than the other attention checks'.
        XCTAssertLessThan(relativeError(dq, numericGradient(q, eps: 8e-3) { f($0, k, v) }), 1e-3)
        XCTAssertLessThan(relativeError(dk, numericGradient(k, eps: 8e-3) { f(q, $0, v) }), 1e-3)
        XCTAssertLessThan(relativeError(dv, numericGradient(v, eps: 8e-3) { f(q, k, $0) }), 1e-3)
        // the cap's factor 1 − (c / cap)² must matter here: dropping it (the uncapped backward) is far off
        var uncapped = s; uncapped.softcap = nil
        var dqPlain = [Float](repeating: 0, count: qn), dkPlain = [Float](repeating: 0, count: kn), dvPlain = dkPlain
        Attention.backward(uncapped, dout: r, q: q, k: k, v: v, keyMask: mask, compute: .fp32, logSumExp: lse,
                           dq: &dqPlain, dk: &dkPlain, dv: &dvPlain)
        XCTAssertGreaterThan(relativeError(dqPlain, dq), 1e-1)
    }
}
