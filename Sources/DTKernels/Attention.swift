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
                let p = probabilities + (b * H + h) * Tq * Tk
                // scores (Tq, Tk) = scale · Q (Tq, D) · Kᵀ (D, Tk)
                BLAS.gemm(.noTrans, .trans, m: Tq, n: Tk, k: D, alpha: scale, a: qb, lda: qStride, b: kb, ldb: kvStride,
                          c: p, ldc: Tk)
                let mask = keyMask.map { $0 + b * Tk }
                for t in 0..<Tq {
                    let row = p + t * Tk
                    let last = s.start + t
                    var m = -Float.infinity
                    for j in 0...last where mask?[j] ?? 1 != 0 && row[j] > m { m = row[j] }
                    var sum: Float = 0
                    if m == -Float.infinity {
                        for j in 0..<Tk { row[j] = 0 }
                        continue
                    }
                    for j in 0...last {
                        let e = (mask?[j] ?? 1) != 0 ? expf(row[j] - m) : 0
                        row[j] = e
                        sum += e
                    }
                    let inv = 1 / sum
                    for j in 0...last { row[j] *= inv }
                    for j in (last + 1)..<Tk { row[j] = 0 }
                }
                // out (Tq, D) = P (Tq, Tk) · V (Tk, D)
                BLAS.gemm(.noTrans, .noTrans, m: Tq, n: D, k: Tk, a: p, lda: Tk, b: vb, ldb: kvStride,
                          c: out + b * Tq * qStride + h * D, ldc: qStride)
            }
        }
    }

    /// Given dout (B, T, H·D), accumulates dq (B, T, H·D), dk, dv (B, T, K·D). Uses `scratch` (workers × T × T).
    /// Only the no-cache case (Tq == Tk) is needed for training. Work is split over (batch, kv head) so the
    /// query heads that share a kv head accumulate into dk/dv on the same worker.
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
                // dV (T, D) += Pᵀ (T, T) · dO (T, D)
                BLAS.gemm(.trans, .noTrans, m: T, n: D, k: T, a: p, lda: T, b: dob, ldb: qStride, beta: 1, c: dvb, ldc: kvStride)
                // dP (T, T) = dO (T, D) · Vᵀ
                BLAS.gemm(.noTrans, .trans, m: T, n: T, k: D, a: dob, lda: qStride, b: vb, ldb: kvStride, c: scratch, ldc: T)
                // dS = P ∘ (dP − rowsum(dP ∘ P)), times the score scale
                for t in 0..<T {
                    let pr = p + t * T, dr = scratch + t * T
                    var dot: Float = 0
                    for j in 0...t { dot += pr[j] * dr[j] }
                    for j in 0...t { dr[j] = pr[j] * (dr[j] - dot) * scale }
                    for j in (t + 1)..<T { dr[j] = 0 }
                }
                // dQ (T, D) += dS (T, T) · K (T, D);  dK (T, D) += dSᵀ · Q
                BLAS.gemm(.noTrans, .noTrans, m: T, n: D, k: T, a: scratch, lda: T, b: kb, ldb: kvStride, beta: 1, c: dqb, ldc: qStride)
                BLAS.gemm(.trans, .noTrans, m: T, n: D, k: T, a: scratch, lda: T, b: qb, ldb: qStride, beta: 1, c: dkb, ldc: kvStride)
            } }
        }
    }
}
