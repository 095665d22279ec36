// Grouped-query causal self-attention with a key padding mask. Query head h reads kv head h / (H/K).
//   q (B, Tq, H·D)   keys/values (B, Tk, K·D) with Tk = start + Tq (start > 0 when a KV cache holds the past)
//   probabilities (B, H, Tq, Tk) saved for backward   out (B, Tq, H·D)
// Query t sits at absolute position start + t and sees keys 0…start + t whose mask is 1 — from its segment's
// start on when rows are packed (segmentStarts (B, Tq), no KV cache).
// The tiles' products run in CKernels' register-blocked AVX-512 kernel (keys and values transposed once per
// head into a scratch) where the CPU has AVX-512F, else through OpenBLAS.
import CKernels
import Foundation

public struct AttentionShape {
    public var batch: Int, queryLength: Int, keyLength: Int, heads: Int, kvHeads: Int, headDim: Int
    public init(batch: Int, queryLength: Int, keyLength: Int, heads: Int, kvHeads: Int, headDim: Int) {
        precondition(heads % kvHeads == 0 && keyLength >= queryLength)
        self.batch = batch; self.queryLength = queryLength; self.keyLength = keyLength
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim
    }
    public var start: Int { keyLength - queryLength }
}

public enum Attention {
    /// Queries are processed in tiles of this many rows; a tile's products stop at its last visible key, so
    /// the masked upper triangle of the (Tq, Tk) scores is never computed (about 40% fewer FLOPs at T = 256).
    public static let tile = 64

    /// Whether the tiles' products use the AVX-512 kernel (false: OpenBLAS; tests switch it to compare).
    public nonisolated(unsafe) static var usesSmallKernel = dt_cpu_has_avx512f() != 0

    /// C (m, n) = alpha · A · B (+ C), A[i][p] at a[i · aRow + p · aCol] (Aᵀ by swapping the strides), B (k, n) row-major.
    @inline(__always)
    public static func product(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, aRow: Int, aCol: Int,
                        b: UnsafePointer<Float>, ldb: Int, accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) {
        if usesSmallKernel {
            dt_small_gemm(m, n, k, alpha, a, aRow, aCol, b, ldb, accumulate ? 1 : 0, c, ldc)
        } else {
            BLAS.gemm(aCol == 1 ? .noTrans : .trans, .noTrans, m: m, n: n, k: k, alpha: alpha, a: a, lda: aCol == 1 ? aRow : aCol,
                      b: b, ldb: ldb, beta: accumulate ? 1 : 0, c: c, ldc: ldc)
        }
    }

    /// C (m, n) = alpha · A (m, k) · Bᵀ, B (n, k) row-major with ldb, given also as `bt` = Bᵀ (k, ldbt) packed
    /// for the kernel (nil on the OpenBLAS path).
    @inline(__always)
    static func productTransposed(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                                  b: UnsafePointer<Float>, ldb: Int, bt: UnsafePointer<Float>?, ldbt: Int,
                                  c: UnsafeMutablePointer<Float>, ldc: Int) {
        if let bt {
            dt_small_gemm(m, n, k, alpha, a, lda, 1, bt, ldbt, 0, c, ldc)
        } else {
            BLAS.gemm(.noTrans, .trans, m: m, n: n, k: k, alpha: alpha, a: a, lda: lda, b: b, ldb: ldb, c: c, ldc: ldc)
        }
    }

    /// Runs body with a (D, keys) scratch holding Bᵀ for B (keys, D) with leading dimension ld, or nil when
    /// the OpenBLAS path runs.
    @inline(__always)
    static func withTransposed(_ b: UnsafePointer<Float>, ld: Int, keys: Int, headDim: Int, queries: Int,
                               _ body: (UnsafeMutablePointer<Float>?) -> Void) {
        // A few queries against a long KV cache (generation) would spend more on the transpose than on the scores.
        guard usesSmallKernel, queries >= 16 else { return body(nil) }
        withUnsafeTemporaryAllocation(of: Float.self, capacity: headDim * keys) { bt in
            let bt = bt.baseAddress!
            dt_transpose(b, ld, keys, headDim, bt, keys)
            body(bt)
        }
    }

    public static func forward(_ s: AttentionShape, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                               keyMask: UnsafePointer<Float>?, segmentStarts: UnsafePointer<Int32>? = nil,
                               probabilities: UnsafeMutablePointer<Float>, out: UnsafeMutablePointer<Float>) {
        precondition(segmentStarts == nil || s.start == 0, "packed rows are not continued from a KV cache")
        let (Tq, Tk, H, D) = (s.queryLength, s.keyLength, s.heads, s.headDim)
        let qStride = H * D, kvStride = s.kvHeads * D, group = H / s.kvHeads
        let scale = 1 / Float(D).squareRoot()
        Parallel.withSingleThreadedBLAS(s.batch * H) { _, pairs in
            for pair in pairs {
                let b = pair / H, h = pair % H
                let kvh = h / group
                let qb = q + b * Tq * qStride + h * D
                let kb = k + b * Tk * kvStride + kvh * D
                let vb = v + b * Tk * kvStride + kvh * D
                let ob = out + b * Tq * qStride + h * D
                let p = probabilities + (b * H + h) * Tq * Tk
                let mask = keyMask.map { $0 + b * Tk }
                let masked = mask.map { m in (0..<Tk).contains { m[$0] == 0 } } ?? false
                let segments = segmentStarts.map { $0 + b * Tq }
                withTransposed(kb, ld: kvStride, keys: Tk, headDim: D, queries: Tq) { kt in
                    for t0 in stride(from: 0, to: Tq, by: tile) {
                        let rows = min(tile, Tq - t0), keys = s.start + t0 + rows   // keys visible to the tile's last row
                        let first = segments.map { Int($0[t0]) } ?? 0                 // and to its first row (packed)
                        let pt = p + t0 * Tk
                        // scores (rows, keys) = scale · Q_tile (rows, D) · K[first..<keys]ᵀ (D, keys)
                        productTransposed(m: rows, n: keys - first, k: D, alpha: scale, a: qb + t0 * qStride, lda: qStride,
                                          b: kb + first * kvStride, ldb: kvStride, bt: kt.map { UnsafePointer($0 + first) }, ldbt: Tk,
                                          c: pt + first, ldc: Tk)
                        for t in 0..<rows {
                            softmaxRow(pt + t * Tk, from: segments.map { Int($0[t0 + t]) } ?? 0, visible: s.start + t0 + t + 1,
                                       length: Tk, mask: masked ? mask : nil)
                        }
                        // out_tile (rows, D) = P_tile (rows, keys) · V[first..<keys] (keys, D)
                        product(m: rows, n: D, k: keys - first, a: pt + first, aRow: Tk, aCol: 1, b: vb + first * kvStride, ldb: kvStride,
                                accumulate: false, c: ob + t0 * qStride, ldc: qStride)
                    }
                }
            }
        }
    }

    /// Softmax over entries from..<visible of a score row whose key mask is 1; every other entry of the row
    /// (up to `length`) becomes exactly 0. A row with no visible key is all zeros.
    @inline(__always)
    static func softmaxRow(_ full: UnsafeMutablePointer<Float>, from: Int = 0, visible: Int, length: Int, mask: UnsafePointer<Float>?) {
        full.update(repeating: 0, count: from)
        (full + visible).update(repeating: 0, count: length - visible)
        let row = full + from, count = visible - from, mask = mask.map { $0 + from }
        if let mask { for j in 0..<count where mask[j] == 0 { row[j] = -.infinity } }
        let m = VectorMath.max(row, count: count)
        guard m > -.infinity else { row.update(repeating: 0, count: count); return }
        let sum = VectorMath.expShifted(row, shift: m, into: row, count: count)
        if let mask { for j in 0..<count where mask[j] == 0 { row[j] = 0 } }
        VectorMath.scale(row, by: 1 / sum, count: count)
    }

    /// Given dout (B, T, H·D), accumulates dq (B, T, H·D), dk, dv (B, T, K·D). Uses `scratch` (workers × T × T).
    /// Only the no-cache case (Tq == Tk) is needed for training. Work is split over (batch, kv head) so the
    /// query heads that share a kv head accumulate into dk/dv on the same worker. Tiled like the forward.
    public static func backward(_ s: AttentionShape, dout: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                v: UnsafePointer<Float>, segmentStarts: UnsafePointer<Int32>? = nil, probabilities: UnsafePointer<Float>,
                                dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>) {
        precondition(s.start == 0)
        let (T, H, D) = (s.queryLength, s.heads, s.headDim)
        let qStride = H * D, kvStride = s.kvHeads * D, group = H / s.kvHeads
        let scale = 1 / Float(D).squareRoot()
        let K = s.kvHeads
        Parallel.withSingleThreadedBLAS(s.batch * K) { worker, pairs in
            let scratch = scratch + worker * T * T
            for pair in pairs {
                let b = pair / K, kvh = pair % K
                let kb = k + b * T * kvStride + kvh * D, dkb = dk + b * T * kvStride + kvh * D
                let vb = v + b * T * kvStride + kvh * D, dvb = dv + b * T * kvStride + kvh * D
                withTransposed(vb, ld: kvStride, keys: T, headDim: D, queries: T) { vt in
                    let segments = segmentStarts.map { $0 + b * T }
                    for h in (kvh * group)..<((kvh + 1) * group) {
                        let p = probabilities + (b * H + h) * T * T
                        let dob = dout + b * T * qStride + h * D
                        let qb = q + b * T * qStride + h * D, dqb = dq + b * T * qStride + h * D
                        for t0 in stride(from: 0, to: T, by: tile) {
                            // keys first..<keys: visible to the tile's first row (its segment, when packed) up to its last
                            let rows = min(tile, T - t0), keys = t0 + rows, first = segments.map { Int($0[t0]) } ?? 0
                            let n = keys - first
                            let pt = p + t0 * T + first, dst = scratch + t0 * T + first, dot = dob + t0 * qStride
                            // dV[first..<keys] (n, D) += P_tileᵀ (n, rows) · dO_tile (rows, D)
                            product(m: n, n: D, k: rows, a: pt, aRow: 1, aCol: T, b: dot, ldb: qStride, accumulate: true,
                                    c: dvb + first * kvStride, ldc: kvStride)
                            // dP_tile (rows, n) = dO_tile (rows, D) · V[first..<keys]ᵀ
                            productTransposed(m: rows, n: n, k: D, a: dot, lda: qStride, b: vb + first * kvStride, ldb: kvStride,
                                              bt: vt.map { UnsafePointer($0 + first) }, ldbt: T, c: dst, ldc: T)
                            // dS = P ∘ (dP − rowsum(dP ∘ P)), times the score scale (P is 0 outside from..<visible)
                            for t in 0..<rows {
                                let pr = pt + t * T, dr = dst + t * T, visible = t0 + t + 1 - first
                                let rowDot = VectorMath.dot(pr, dr, count: visible)
                                for j in 0..<visible { dr[j] = pr[j] * (dr[j] - rowDot) * scale }
                                (dr + visible).update(repeating: 0, count: n - visible)
                            }
                            // dQ_tile (rows, D) += dS_tile (rows, n) · K[first..<keys];  dK[first..<keys] += dS_tileᵀ · Q_tile
                            product(m: rows, n: D, k: n, a: dst, aRow: T, aCol: 1, b: kb + first * kvStride, ldb: kvStride, accumulate: true,
                                    c: dqb + t0 * qStride, ldc: qStride)
                            product(m: n, n: D, k: rows, a: dst, aRow: 1, aCol: T, b: qb + t0 * qStride, ldb: qStride, accumulate: true,
                                    c: dkb + first * kvStride, ldc: kvStride)
                        }
                    }
                }
            }
        }
    }
}
