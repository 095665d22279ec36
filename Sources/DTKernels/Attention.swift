// Grouped-query causal self-attention with a key padding mask. Query head h reads kv head h / (H/K).
//   q (B, Tq, H·D)   keys/values (B, Tk, K·D) with Tk = start + Tq (start > 0 when a KV cache holds the past)
//   out (B, Tq, H·D); for backward only each query row's log-sum-exp (B, H, Tq): the backward recomputes a tile's
//   probabilities from Q, K and it (flash-attention style), so no layer keeps (B, H, T, T) of them
// Query t sits at absolute position i = start + t and sees keys 0…i whose mask is 1 — from its segment's
// start on when rows are packed (segmentStarts (B, Tq), no KV cache), and with a sliding window W only keys
// j with i − W < j ≤ i (the last W; a window is in key positions, which packing and padding keep contiguous).
// The tiles' products run in CKernels' register-blocked AVX-512 kernel (keys and values transposed once per
// head into a scratch) where the CPU has AVX-512F, else through OpenBLAS. With `compute: bf16` on a CPU with
// AVX512-BF16 they run in its bf16 twin (vdpbf16ps): inputs rounded to bf16, fp32 accumulation and output, keys
// and values packed into bf16 pairs once per head, A rounded per product; softmax, masking and scaling stay fp32.
// With soft-capping (Gemma 2) the scaled scores pass through cap · tanh(s / cap) before the mask and softmax; the
// backward's recomputed capped scores also give the factor 1 − (c / cap)².
import CKernels
import Foundation

public struct AttentionShape {
    public var batch: Int, queryLength: Int, keyLength: Int, heads: Int, kvHeads: Int, headDim: Int
    /// Sliding window: a query sees at most this many keys, itself and the ones before (nil: all of them).
    public var window: Int?
    /// Score scale (Gemma's 1/√query_pre_attn_scalar); nil: 1/√D.
    public var scale: Float?
    /// Scores (after the scale) become cap · tanh(s / cap) (Gemma 2 `attn_logit_softcapping`); nil: uncapped.
    public var softcap: Float?
    public init(batch: Int, queryLength: Int, keyLength: Int, heads: Int, kvHeads: Int, headDim: Int, window: Int? = nil, scale: Float? = nil,
                softcap: Float? = nil) {
        precondition(heads % kvHeads == 0 && keyLength >= queryLength && (window ?? 1) >= 1 && (softcap ?? 1) > 0)
        self.batch = batch; self.queryLength = queryLength; self.keyLength = keyLength
        self.heads = heads; self.kvHeads = kvHeads; self.headDim = headDim; self.window = window; self.scale = scale
        self.softcap = softcap
    }
    var scoreScale: Float { scale ?? 1 / Float(headDim).squareRoot() }
    public var start: Int { keyLength - queryLength }

    /// The first key query row t (absolute position start + t) may see: its segment's start (packed rows,
    /// `segment`) or 0, moved up to the window's first key.
    @inline(__always) func firstKey(_ t: Int, segment: Int) -> Int {
        guard let window else { return segment }
        return max(segment, start + t - window + 1)
    }
}

public enum Attention {
    /// Queries are processed in tiles of this many rows; a tile's products stop at its last visible key, so
    /// the masked upper triangle of the (Tq, Tk) scores is never computed (about 40% fewer FLOPs at T = 256).
    public static let tile = 64

    /// Whether the tiles' products use the AVX-512 kernel (false: OpenBLAS; tests switch it to compare).
    public nonisolated(unsafe) static var usesSmallKernel = hasAVX512F

    /// This CPU runs AVX-512F and the OS saves its registers (cpuid once; also decides VectorMath's C loops).
    public static let hasAVX512F = dt_cpu_has_avx512f() != 0

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

    /// The same product with A and B rounded to bf16 (fp32 products, sums and C): B given as bf16 pairs
    /// (`packPairs`), `scratch` of at least `bf16ScratchWords(m:k:)` words for A's rounded copy. Needs
    /// `CPUFeatures.avx512BF16`.
    @inline(__always)
    public static func productBF16(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, aRow: Int, aCol: Int,
                                   bPairs: UnsafePointer<UInt32>, ldb: Int, accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int,
                                   scratch: UnsafeMutablePointer<UInt32>) {
        dt_small_gemm_bf16(m, n, k, alpha, a, aRow, aCol, bPairs, ldb, accumulate ? 1 : 0, c, ldc, scratch)
    }

    /// Words of scratch `productBF16` needs for an (m, k) A: its rows rounded to bf16 pairs.
    public static func bf16ScratchWords(m: Int, k: Int) -> Int { m * ((k + 1) / 2) }

    /// B (k, n) row-major (or, `transposed`, given as Bᵀ (n, k) row-major) rounded to bf16 pairs: ⌈k/2⌉ rows of
    /// n words with leading dimension `ldPairs`, word (q, j) = bf16(B[2q][j]) | bf16(B[2q+1][j]) << 16.
    public static func packPairs(_ b: UnsafePointer<Float>, ld: Int, k: Int, n: Int, transposed: Bool = false,
                                 into pairs: UnsafeMutablePointer<UInt32>, ldPairs: Int) {
        if transposed {
            dt_bf16_pack_pairs_transposed(b, ld, n, k, pairs, ldPairs)
        } else {
            dt_bf16_pack_pairs(b, ld, k, n, pairs, ldPairs)
        }
    }

    /// The right-hand operand B (k, n) of a tile product as its kernel reads it.
    enum Operand {
        case rows(UnsafePointer<Float>, ld: Int)         // B row-major: the fp32 kernel or OpenBLAS
        case transposed(UnsafePointer<Float>, ld: Int)   // Bᵀ (n, k) row-major: OpenBLAS reads it transposed
        case pairs(UnsafePointer<UInt32>, ld: Int)       // bf16 pairs (⌈k/2⌉, n): the bf16 kernel

        /// B from row `row` (even for pairs) and column `column` on.
        @inline(__always)
        func from(row: Int = 0, column: Int = 0) -> Operand {
            switch self {
            case .rows(let b, let ld): .rows(b + row * ld + column, ld: ld)
            case .transposed(let b, let ld): .transposed(b + column * ld + row, ld: ld)
            case .pairs(let b, let ld): .pairs(b + row / 2 * ld + column, ld: ld)
            }
        }
    }

    /// C (m, n) = alpha · A · B (+ C), A as in `product`, on the path B is prepared for; `scratch` as for
    /// `productBF16` (used only with pairs).
    @inline(__always)
    static func product(m: Int, n: Int, k: Int, alpha: Float = 1, a: UnsafePointer<Float>, aRow: Int, aCol: Int, b: Operand,
                        accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int, scratch: UnsafeMutablePointer<UInt32>) {
        switch b {
        case .rows(let b, let ld):
            product(m: m, n: n, k: k, alpha: alpha, a: a, aRow: aRow, aCol: aCol, b: b, ldb: ld, accumulate: accumulate, c: c, ldc: ldc)
        case .transposed(let b, let ld):
            BLAS.gemm(aCol == 1 ? .noTrans : .trans, .trans, m: m, n: n, k: k, alpha: alpha, a: a, lda: aCol == 1 ? aRow : aCol,
                      b: b, ldb: ld, beta: accumulate ? 1 : 0, c: c, ldc: ldc)
        case .pairs(let b, let ld):
            productBF16(m: m, n: n, k: k, alpha: alpha, a: a, aRow: aRow, aCol: aCol, bPairs: b, ldb: ld, accumulate: accumulate,
                        c: c, ldc: ldc, scratch: scratch)
        }
    }

    /// How one call's tile products run, decided once from the model's compute precision and the CPU; and the
    /// per-worker scratch that holds its prepared operands (`slots` of `slotWords`) and A's bf16 copy.
    struct Path {
        /// Inputs rounded to bf16, fp32 accumulation: `compute: bf16`, the AVX512-BF16 kernel on this CPU (the
        /// cached flag), and enough queries to pay for packing keys and values.
        let bf16: Bool
        /// fp32: Bᵀ operands transposed into the scratch for the AVX-512 kernel (else OpenBLAS reads them in place).
        let transposes: Bool
        let slotWords: Int, aWords: Int

        /// `keys` keys of head dim D; products (m, k) up to (tile, max(D, keys)) and (keys, tile).
        init(_ compute: ComputePrecision, queries: Int, keys: Int, headDim: Int) {
            // A few queries against a long KV cache (generation) would spend more on the transpose than on the scores.
            transposes = usesSmallKernel && queries >= 16
            bf16 = transposes && compute == .bf16 && CPUFeatures.avx512BF16
            slotWords = headDim * max(keys, tile)
            aWords = bf16 ? max(bf16ScratchWords(m: tile, k: max(headDim, keys)), bf16ScratchWords(m: keys, k: tile)) : 0
        }

        /// Runs body with this worker's scratch: `slots` operand slots, then A's bf16 copy.
        @inline(__always)
        func withScratch(slots: Int, _ body: (UnsafeMutablePointer<UInt32>) -> Void) {
            let words = (transposes ? slots * slotWords : 0) + aWords
            withUnsafeTemporaryAllocation(of: UInt32.self, capacity: max(words, 1)) { body($0.baseAddress!) }
        }

        @inline(__always) func slot(_ i: Int, _ scratch: UnsafeMutablePointer<UInt32>) -> UnsafeMutablePointer<UInt32> {
            scratch + i * slotWords
        }
        @inline(__always) func aScratch(slots: Int, _ scratch: UnsafeMutablePointer<UInt32>) -> UnsafeMutablePointer<UInt32> {
            scratch + (transposes ? slots * slotWords : 0)
        }

        /// B (rows, cols) with leading dimension ld as the operand of this path (bf16: packed into `slot`).
        @inline(__always)
        func direct(_ b: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int, slot: UnsafeMutablePointer<UInt32>) -> Operand {
            guard bf16 else { return .rows(b, ld: ld) }
            dt_bf16_pack_pairs(b, ld, rows, cols, slot, cols)
            return .pairs(slot, ld: cols)
        }

        /// Bᵀ (cols, rows) of B (rows, cols) with leading dimension ld as the operand of this path: packed (bf16),
        /// transposed into `slot` (fp32 kernel) or read in place by OpenBLAS.
        @inline(__always)
        func transposed(_ b: UnsafePointer<Float>, ld: Int, rows: Int, cols: Int, slot: UnsafeMutablePointer<UInt32>) -> Operand {
            if bf16 {
                dt_bf16_pack_pairs_transposed(b, ld, rows, cols, slot, rows)
                return .pairs(slot, ld: rows)
            }
            guard transposes else { return .transposed(b, ld: ld) }
            let bt = UnsafeMutableRawPointer(slot).bindMemory(to: Float.self, capacity: rows * cols)
            dt_transpose(b, ld, rows, cols, bt, rows)
            return .rows(bt, ld: rows)
        }

        /// The first key of a tile's products: bf16 pairs of keys start at even indices (the key before a segment's
        /// first has probability 0, so starting one early adds exact zeros).
        @inline(__always) func pairAligned(_ key: Int) -> Int { bf16 ? key & ~1 : key }
    }

    /// `compute` is the model's precision: bf16 rounds the tiles' product inputs to bf16 (fp32 accumulation,
    /// output, softmax, masking and scale) where the CPU has AVX512-BF16; fp32 is the exact reference.
    /// `logSumExp` (B, H, Tq), when given, receives each row's log Σ exp(score) over its visible keys (+∞ for a row
    /// that sees none), all the backward needs; `probabilities` (B, H, Tq, Tk), when given, receives every row's
    /// probabilities (exact zeros where masked), for inspection — else each worker keeps one tile's (tile, Tk).
    public static func forward(_ s: AttentionShape, q: UnsafePointer<Float>, k: UnsafePointer<Float>, v: UnsafePointer<Float>,
                               keyMask: UnsafePointer<Float>?, segmentStarts: UnsafePointer<Int32>? = nil, compute: ComputePrecision,
                               logSumExp: UnsafeMutablePointer<Float>? = nil, probabilities: UnsafeMutablePointer<Float>? = nil,
                               out: UnsafeMutablePointer<Float>) {
        precondition(segmentStarts == nil || s.start == 0, "packed rows are not continued from a KV cache")
        let (Tq, Tk, H, D) = (s.queryLength, s.keyLength, s.heads, s.headDim)
        let qStride = H * D, kvStride = s.kvHeads * D, group = H / s.kvHeads
        let scale = s.scoreScale
        let path = Path(compute, queries: Tq, keys: Tk, headDim: D)
        Parallel.withSingleThreadedBLAS(s.batch * H) { _, pairs in
            withUnsafeTemporaryAllocation(of: Float.self, capacity: probabilities == nil ? tile * Tk : 1) { tileScratch in   // (tile, Tk)
            path.withScratch(slots: 2) { scratch in
                let aScratch = path.aScratch(slots: 2, scratch)
                for pair in pairs {
                    let b = pair / H, h = pair % H
                    let kvh = h / group
                    let qb = q + b * Tq * qStride + h * D
                    let ob = out + b * Tq * qStride + h * D
                    let mask = keyMask.map { $0 + b * Tk }
                    let masked = mask.map { m in (0..<Tk).contains { m[$0] == 0 } } ?? false
                    let segments = segmentStarts.map { $0 + b * Tq }
                    let kb = k + b * Tk * kvStride + kvh * D, vb = v + b * Tk * kvStride + kvh * D
                    let keysT = path.transposed(kb, ld: kvStride, rows: Tk, cols: D, slot: path.slot(0, scratch))   // Kᵀ (D, Tk)
                    let values = path.direct(vb, ld: kvStride, rows: Tk, cols: D, slot: path.slot(1, scratch))      // V (Tk, D)
                    for t0 in stride(from: 0, to: Tq, by: tile) {
                        let rows = min(tile, Tq - t0), keys = s.start + t0 + rows                   // keys visible to the tile's last row
                        let first = path.pairAligned(s.firstKey(t0, segment: segments.map { Int($0[t0]) } ?? 0))   // and to its first row
                        let pt = probabilities.map { $0 + ((b * H + h) * Tq + t0) * Tk } ?? tileScratch.baseAddress!
                        // scores (rows, keys) = scale · Q_tile (rows, D) · K[first..<keys]ᵀ (D, keys)
                        product(m: rows, n: keys - first, k: D, alpha: scale, a: qb + t0 * qStride, aRow: qStride, aCol: 1,
                                b: keysT.from(column: first), accumulate: false, c: pt + first, ldc: Tk, scratch: aScratch)
                        if let cap = s.softcap {
                            for t in 0..<rows { SoftCap.forward(pt + t * Tk + first, count: keys - first, cap: cap) }
                        }
                        for t in 0..<rows {
                            let lse = softmaxRow(pt + t * Tk, from: s.firstKey(t0 + t, segment: segments.map { Int($0[t0 + t]) } ?? 0),
                                                 visible: s.start + t0 + t + 1, length: Tk, mask: masked ? mask : nil)
                            logSumExp?[(b * H + h) * Tq + t0 + t] = lse
                        }
                        // out_tile (rows, D) = P_tile (rows, keys) · V[first..<keys] (keys, D)
                        product(m: rows, n: D, k: keys - first, a: pt + first, aRow: Tk, aCol: 1, b: values.from(row: first),
                                accumulate: false, c: ob + t0 * qStride, ldc: qStride, scratch: aScratch)
                    }
                }
            }
            }
        }
    }

    /// Softmax over entries from..<visible of a score row whose key mask is 1; every other entry of the row
    /// (up to `length`) becomes exactly 0. A row with no visible key is all zeros. Returns the row's log-sum-exp
    /// (+∞ for a row with no visible key, so exp(score − it) is 0 there too).
    @inline(__always) @discardableResult
    static func softmaxRow(_ full: UnsafeMutablePointer<Float>, from: Int = 0, visible: Int, length: Int, mask: UnsafePointer<Float>?) -> Float {
        full.update(repeating: 0, count: from)
        (full + visible).update(repeating: 0, count: length - visible)
        let row = full + from, count = visible - from, mask = mask.map { $0 + from }
        if let mask { for j in 0..<count where mask[j] == 0 { row[j] = -.infinity } }
        let m = VectorMath.max(row, count: count)
        guard m > -.infinity else { row.update(repeating: 0, count: count); return .infinity }
        let sum = VectorMath.expShifted(row, shift: m, into: row, count: count)
        if let mask { for j in 0..<count where mask[j] == 0 { row[j] = 0 } }
        VectorMath.scale(row, by: 1 / sum, count: count)
        return m + Foundation.log(sum)
    }

    /// A tile row's probabilities recomputed from its (capped) scores `row` over keys first..<end and its
    /// log-sum-exp, into `p`: exp(score − lse) on the keys the forward's softmax saw (from `from`, up to `visible`,
    /// mask 1), exactly 0 elsewhere — what the forward's softmaxRow produced, up to rounding.
    @inline(__always)
    static func recomputedRow(_ row: UnsafePointer<Float>, into p: UnsafeMutablePointer<Float>, first: Int, from: Int, visible: Int, end: Int,
                              lse: Float, mask: UnsafePointer<Float>?) {
        let lo = max(from, first), hi = min(visible, end)
        guard lse < .infinity, hi > lo else { p.update(repeating: 0, count: end - first); return }
        p.update(repeating: 0, count: lo - first)
        (p + (hi - first)).update(repeating: 0, count: end - hi)
        _ = VectorMath.expShifted(row + (lo - first), shift: lse, into: p + (lo - first), count: hi - lo)
        if let mask { for j in lo..<hi where mask[j] == 0 { p[j - first] = 0 } }
    }

    /// Given dout (B, T, H·D), accumulates dq (B, T, H·D), dk, dv (B, T, K·D), recomputing each tile's probabilities
    /// from Q, K, the key mask and the forward's `logSumExp` (B, H, T) — one more Q·Kᵀ product per tile instead of
    /// (B, H, T, T) kept per layer. Only the no-cache case (Tq == Tk) is needed for training. Work is split over
    /// (batch, kv head) so the query heads that share a kv head accumulate into dk/dv on the same worker; each worker
    /// holds a tile's scores, probabilities and their gradient (3 × tile × T). Products in `compute` as the forward's.
    public static func backward(_ s: AttentionShape, dout: UnsafePointer<Float>, q: UnsafePointer<Float>, k: UnsafePointer<Float>,
                                v: UnsafePointer<Float>, keyMask: UnsafePointer<Float>?, segmentStarts: UnsafePointer<Int32>? = nil,
                                compute: ComputePrecision, logSumExp: UnsafePointer<Float>,
                                dq: UnsafeMutablePointer<Float>, dk: UnsafeMutablePointer<Float>, dv: UnsafeMutablePointer<Float>) {
        precondition(s.start == 0)
        let (T, H, D) = (s.queryLength, s.heads, s.headDim)
        let qStride = H * D, kvStride = s.kvHeads * D, group = H / s.kvHeads
        let scale = s.scoreScale
        let K = s.kvHeads
        let path = Path(compute, queries: T, keys: T, headDim: D)
        Parallel.withSingleThreadedBLAS(s.batch * K) { _, pairs in
            path.withScratch(slots: 5) { operands in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: 3 * tile * T) { tiles in   // scores, P, dS: (tile, T) each
                    let scoresTile = tiles.baseAddress!, pTile = scoresTile + tile * T, dsTile = pTile + tile * T
                    let aScratch = path.aScratch(slots: 5, operands)
                    for pair in pairs {
                        let b = pair / K, kvh = pair % K
                        let kb = k + b * T * kvStride + kvh * D, dkb = dk + b * T * kvStride + kvh * D
                        let vb = v + b * T * kvStride + kvh * D, dvb = dv + b * T * kvStride + kvh * D
                        let valuesT = path.transposed(vb, ld: kvStride, rows: T, cols: D, slot: path.slot(0, operands))   // Vᵀ (D, T)
                        let keys = path.direct(kb, ld: kvStride, rows: T, cols: D, slot: path.slot(1, operands))          // K (T, D)
                        let keysT = path.transposed(kb, ld: kvStride, rows: T, cols: D, slot: path.slot(4, operands))     // Kᵀ (D, T)
                        let segments = segmentStarts.map { $0 + b * T }
                        let mask = keyMask.map { $0 + b * T }
                        let masked = mask.map { m in (0..<T).contains { m[$0] == 0 } } ?? false
                        for h in (kvh * group)..<((kvh + 1) * group) {
                            let lse = logSumExp + (b * H + h) * T
                            let dob = dout + b * T * qStride + h * D
                            let qb = q + b * T * qStride + h * D, dqb = dq + b * T * qStride + h * D
                            for t0 in stride(from: 0, to: T, by: tile) {
                                // keys first..<end: visible to the tile's first row (its segment, when packed; its window) up to its last
                                let rows = min(tile, T - t0), end = t0 + rows
                                let first = path.pairAligned(s.firstKey(t0, segment: segments.map { Int($0[t0]) } ?? 0))
                                let n = end - first
                                // scores (rows, n) = scale · Q_tile · K[first..<end]ᵀ (capped), as the forward computed them;
                                // P_tile = exp(scores − lse) on each row's visible keys, 0 elsewhere
                                product(m: rows, n: n, k: D, alpha: scale, a: qb + t0 * qStride, aRow: qStride, aCol: 1,
                                        b: keysT.from(column: first), accumulate: false, c: scoresTile, ldc: T, scratch: aScratch)
                                if let cap = s.softcap { for t in 0..<rows { SoftCap.forward(scoresTile + t * T, count: n, cap: cap) } }
                                for t in 0..<rows {
                                    recomputedRow(scoresTile + t * T, into: pTile + t * T, first: first,
                                                  from: s.firstKey(t0 + t, segment: segments.map { Int($0[t0 + t]) } ?? 0),
                                                  visible: t0 + t + 1, end: end, lse: lse[t0 + t], mask: masked ? mask : nil)
                                }
                                let dot = dob + t0 * qStride
                                let dO = path.direct(dot, ld: qStride, rows: rows, cols: D, slot: path.slot(2, operands))     // dO_tile (rows, D)
                                // dV[first..<end] (n, D) += P_tileᵀ (n, rows) · dO_tile (rows, D)
                                product(m: n, n: D, k: rows, a: pTile, aRow: 1, aCol: T, b: dO, accumulate: true,
                                        c: dvb + first * kvStride, ldc: kvStride, scratch: aScratch)
                                // dP_tile (rows, n) = dO_tile (rows, D) · V[first..<end]ᵀ
                                product(m: rows, n: n, k: D, a: dot, aRow: qStride, aCol: 1, b: valuesT.from(column: first),
                                        accumulate: false, c: dsTile, ldc: T, scratch: aScratch)
                                // dS = P ∘ (dP − rowsum(dP ∘ P)), times the score scale (P is 0 outside the row's visible keys,
                                // so dS is too: a row's later window start needs no special case); with a cap, × 1 − (c / cap)²
                                for t in 0..<rows {
                                    let pr = pTile + t * T, dr = dsTile + t * T, visible = t0 + t + 1 - first
                                    VectorMath.softmaxBackward(pr, dr, scale: scale, count: visible)
                                    if let cap = s.softcap { SoftCap.backward(dr, capped: scoresTile + t * T, count: visible, cap: cap) }
                                    (dr + visible).update(repeating: 0, count: n - visible)
                                }
                                // dQ_tile (rows, D) += dS_tile (rows, n) · K[first..<end];  dK[first..<end] += dS_tileᵀ · Q_tile
                                product(m: rows, n: D, k: n, a: dsTile, aRow: T, aCol: 1, b: keys.from(row: first), accumulate: true,
                                        c: dqb + t0 * qStride, ldc: qStride, scratch: aScratch)
                                let qTile = path.direct(qb + t0 * qStride, ld: qStride, rows: rows, cols: D, slot: path.slot(3, operands))
                                product(m: n, n: D, k: rows, a: dsTile, aRow: 1, aCol: T, b: qTile, accumulate: true,
                                        c: dkb + first * kvStride, ldc: kvStride, scratch: aScratch)
                            }
                        }
                    }
                }
            }
        }
    }
}
