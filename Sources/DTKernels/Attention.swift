// Grouped-query causal self-attention with a key padding mask. Query head h reads kv head h / (H/K).
//   q (B, Tq, H·D)   keys/values (B, Tk, K·D) with Tk = start + Tq (start > 0 when a KV cache holds the past)
//   probabilities (B, H, Tq, Tk) saved for backward   out (B, Tq, H·D)
// Query t sits at absolute position start + t and sees keys 0…start + t whose mask is 1.
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

    public static func forward(_ s: AttentionShape, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                               keyMask: UnsafePointer<Float>?, probabilities: UnsafeMutablePointer<Float>,
                               out: UnsafeMutablePointer<Float>) {
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
                for t0 in stride(from: 0, to: Tq, by: tile) {
                    let rows = min(tile, Tq - t0), keys = s.start + t0 + rows   // keys visible to the tile's last row
                    let pt = p + t0 * Tk
                    // scores (rows, keys) = scale · Q_tile (rows, D) · K[0..<keys]ᵀ (D, keys)
                    BLAS.gemm(.noTrans, .trans, m: rows, n: keys, k: D, alpha: scale, a: qb + t0 * qStride, lda: qStride,
                              b: kb, ldb: kvStride, c: pt, ldc: Tk)
                    for t in 0..<rows { softmaxRow(pt + t * Tk, visible: s.start + t0 + t + 1, length: Tk, mask: masked ? mask : nil) }
                    // out_tile (rows, D) = P_tile (rows, keys) · V[0..<keys] (keys, D)
                    BLAS.gemm(.noTrans, .noTrans, m: rows, n: D, k: keys, a: pt, lda: Tk, b: vb, ldb: kvStride,
                              c: ob + t0 * qStride, ldc: qStride)
                }
            }
        }
    }

    /// Softmax over the first `visible` entries of a score row whose key mask is 1; every other entry of
    /// the row (up to `length`) becomes exactly 0. A row with no visible key is all zeros.
    @inline(__always)
    static func softmaxRow(_ row: UnsafeMutablePointer<Float>, visible: Int, length: Int, mask: UnsafePointer<Float>?) {
        if let mask { for j in 0..<visible where mask[j] == 0 { row[j] = -.infinity } }
        let m = VectorMath.max(row, count: visible)
        (row + visible).update(repeating: 0, count: length - visible)
        guard m > -.infinity else { row.update(repeating: 0, count: visible); return }
        let sum = VectorMath.expShifted(row, shift: m, into: row, count: visible)
        if let mask { for j in 0..<visible where mask[j] == 0 { row[j] = 0 } }
        VectorMath.scale(row, by: 1 / sum, count: visible)
    }

    /// Given dout (B, T, H·D), accumulates dq (B, T, H·D), dk, dv (B, T, K·D). Uses `scratch` (workers × T × T).
    /// Only the no-cache case (Tq == Tk) is needed for training. Work is split over (batch, kv head) so the
    /// query heads that share a kv head accumulate into dk/dv on the same worker. Tiled like the forward.
    public static func backward(_ s: AttentionShape, dout: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                v: UnsafePointer<Float>, probabilities: UnsafePointer<Float>,
                                dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>,
                                scratch: UnsafeMutablePointer<Float>) {
        precondition(s.start == 0)
        let (T, H, D) = (s.queryLength, s.heads, s.headDim)
        let qStride = H * D, kvStride = s.kvHeads * D, group = H / s.kvHeads
        let scale = 1 / Float(D).squareRoot()
        let K = s.kvHeads
        Parallel.withSingleThreadedBLAS(s.batch * K) { worker, pairs in
            let scratch = scratch + worker * T * T
            for pair in pairs { for h in (pair % K * group)..<((pair % K + 1) * group) {
                let b = pair / K
                let kvh = h / group
                let p = probabilities + (b * H + h) * T * T
                let dob = dout + b * T * qStride + h * D
                let qb = q + b * T * qStride + h * D, dqb = dq + b * T * qStride + h * D
                let kb = k + b * T * kvStride + kvh * D, dkb = dk + b * T * kvStride + kvh * D
                let vb = v + b * T * kvStride + kvh * D, dvb = dv + b * T * kvStride + kvh * D
                for t0 in stride(from: 0, to: T, by: tile) {
                    let rows = min(tile, T - t0), keys = t0 + rows
                    let pt = p + t0 * T, dst = scratch + t0 * T, dot = dob + t0 * qStride
                    // dV[0..<keys] (keys, D) += P_tileᵀ (keys, rows) · dO_tile (rows, D)
                    BLAS.gemm(.trans, .noTrans, m: keys, n: D, k: rows, a: pt, lda: T, b: dot, ldb: qStride, beta: 1, c: dvb, ldc: kvStride)
                    // dP_tile (rows, keys) = dO_tile (rows, D) · V[0..<keys]ᵀ
                    BLAS.gemm(.noTrans, .trans, m: rows, n: keys, k: D, a: dot, lda: qStride, b: vb, ldb: kvStride, c: dst, ldc: T)
                    // dS = P ∘ (dP − rowsum(dP ∘ P)), times the score scale
                    for t in 0..<rows {
                        let pr = pt + t * T, dr = dst + t * T, visible = t0 + t + 1
                        let rowDot = VectorMath.dot(pr, dr, count: visible)
                        for j in 0..<visible { dr[j] = pr[j] * (dr[j] - rowDot) * scale }
                        (dr + visible).update(repeating: 0, count: keys - visible)
                    }
                    // dQ_tile (rows, D) += dS_tile (rows, keys) · K[0..<keys];  dK[0..<keys] += dS_tileᵀ · Q_tile
                    BLAS.gemm(.noTrans, .noTrans, m: rows, n: D, k: keys, a: dst, lda: T, b: kb, ldb: kvStride, beta: 1,
                              c: dqb + t0 * qStride, ldc: qStride)
                    BLAS.gemm(.trans, .noTrans, m: keys, n: D, k: rows, a: dst, lda: T, b: qb + t0 * qStride, ldb: qStride, beta: 1,
                              c: dkb, ldc: kvStride)
                }
            } }
        }
    }
}
