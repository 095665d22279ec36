// The one place that calls OpenBLAS. Matrix convention, written once:
//
//   Every matrix is row-major. A weight W of a linear layer is (out, in), exactly as HF and GGUF store it
//   (GGUF ne[0] = in is the row length). Activations are (rows, features).
//   Linear forward   y (N, out) = x (N, in) · Wᵀ                 -> gemm(.noTrans, .trans)
//   Grad of input   dx (N, in)  = dy (N, out) · W                -> gemm(.noTrans, .noTrans)
//   Grad of weight  dW (out, in) += dyᵀ (out, N) · x (N, in)      -> gemm(.trans, .noTrans)
import CBLAS
import Foundation

public enum Transpose { case noTrans, trans }

public enum BLAS {
    /// C (m, n) = alpha · op(A) (m, k) · op(B) (k, n) + beta · C, all row-major with leading dimensions.
    @inline(__always)
    public static func gemm(_ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int,
                            alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                            b: UnsafePointer<Float>, ldb: Int,
                            beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        func rows(_ part: Range<Int>) {
            let i = part.lowerBound
            gemm(ta, tb, m: part.count, n: n, k: k, alpha: alpha, a: ta == .noTrans ? a + i * lda : a + i, lda: lda,
                 b: b, ldb: ldb, beta: beta, c: c + i * ldc, ldc: ldc)
        }
        if splitsUnevenly(m: m, n: n, k: k) {
            Parallel.splitBetweenTwoCores(m, rows)
            return
        }
        if splitsAcrossCores(m: m, n: n, k: k) {
            // One single-threaded call per core on its own rows of C (or columns when C is short and wide).
            let splitRows = m >= n
            Parallel.withSingleThreadedBLAS(splitRows ? m : n) { _, part in
                let (i, count) = (part.lowerBound, part.count)
                if splitRows {
                    rows(part)
                } else {
                    gemm(ta, tb, m: m, n: count, k: k, alpha: alpha, a: a, lda: lda,
                         b: tb == .noTrans ? b + i : b + i * ldb, ldb: ldb, beta: beta, c: c + i, ldc: ldc)
                }
            }
            return
        }
        cblas_sgemm(CblasRowMajor, ta == .trans ? CblasTrans : CblasNoTrans, tb == .trans ? CblasTrans : CblasNoTrans,
                    blasint(m), blasint(n), blasint(k), alpha, a, blasint(lda), b, blasint(ldb), beta, c, blasint(ldc))
    }

    /// Products with a side narrower than this (rank-r LoRA factors, the k/v projections of grouped-query
    /// models and their input gradients) are split by rows across this rank's cores, one single-threaded
    /// OpenBLAS call each: OpenBLAS's own threads wait on each other's packed panels, which costs more than
    /// the packing the split repeats (k projection 1024 × 192 × 576: 160–185 vs 95–167 GFLOP/s; LoRA A
    /// 1024 × 8 × 576: 65–72 vs 22–35; same process, interleaved). Wider products keep OpenBLAS's threading.
    static let narrowSide = 512
    static let minimumSplitLength = 64
    static let minimumSplitWork = 1 << 20

    /// With two cores per rank, the layer-sized products (at least 256 rows, at most 4096 columns, no side
    /// narrower than `narrowSide`) are split by rows in two single-threaded OpenBLAS calls whose shares follow
    /// the cores' measured speeds (`Parallel.splitBetweenTwoCores`). On a shared VM the two cores rarely run
    /// at the same speed, and OpenBLAS's threads wait for the slower one at every packed panel: the 210 layer
    /// products of SmolLM2's forward took 1.15 / 1.09 / 1.09 s split this way vs 1.22 / 1.13 / 1.21 s with
    /// OpenBLAS's threads inside dtrain's forward (one process, alternated, medians of 12), and in C 1.15 / 1.11
    /// / 0.92 / 0.96 s vs 1.26 / 1.23 / 1.08 / 1.06 s (1.28 / 1.23 / 0.99 / 1.07 s in even halves).
    /// The LM head (49152 columns) keeps OpenBLAS's threads.
    public static func splitsUnevenly(m: Int, n: Int, k: Int) -> Bool {
        Parallel.workers == 2 && m >= 256 && n <= 4096 && min(m, n, k) >= narrowSide && threads > 1
    }

    /// Whether `gemm` splits this product itself (see `narrowSide`); false inside an already parallel region.
    public static func splitsAcrossCores(m: Int, n: Int, k: Int) -> Bool {
        Parallel.workers > 1 && min(m, n, k) < narrowSide && max(m, n) >= minimumSplitLength * Parallel.workers
            && m * n * k >= minimumSplitWork && threads > 1
    }

    /// y (rows, out) = x (rows, in) · Wᵀ  (+ beta · y)
    @inline(__always)
    public static func linear(_ x: UnsafePointer<Float>, _ w: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                              rows: Int, inFeatures: Int, outFeatures: Int, beta: Float = 0) {
        gemm(.noTrans, .trans, m: rows, n: outFeatures, k: inFeatures, a: x, lda: inFeatures,
             b: w, ldb: inFeatures, beta: beta, c: y, ldc: outFeatures)
    }

    public static func setThreads(_ n: Int) { openblas_set_num_threads(Int32(max(1, n))) }

    /// Sets the threads of this rank: BLAS's and the element-wise workers'.
    public static func configureThreads(_ n: Int) {
        setThreads(n)
        BF16.setThreads(max(1, n))
        Parallel.workers = max(1, n)
    }
    public static var threads: Int { Int(openblas_get_num_threads()) }

    /// Slow triple loop with the same signature as `gemm`, kept as the reference for tests.
    public static func naiveGemm(_ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int,
                                 alpha: Float = 1, a: UnsafePointer<Float>, lda: Int,
                                 b: UnsafePointer<Float>, ldb: Int,
                                 beta: Float = 0, c: UnsafeMutablePointer<Float>, ldc: Int) {
        for i in 0..<m {
            for j in 0..<n {
                var sum: Double = 0
                for p in 0..<k {
                    let av = ta == .noTrans ? a[i * lda + p] : a[p * lda + i]
                    let bv = tb == .noTrans ? b[p * ldb + j] : b[j * ldb + p]
                    sum += Double(av) * Double(bv)
                }
                c[i * ldc + j] = alpha * Float(sum) + (beta == 0 ? 0 : beta * c[i * ldc + j])
            }
        }
    }
}

/// Debian 12's OpenBLAS 0.3.21 does not recognise recent Intel/AMD CPUs (Sapphire Rapids, Zen 4) and falls
/// back to its slowest kernels ("Prescott", SSE3 — 4–5× slower here). OpenBLAS reads OPENBLAS_CORETYPE
/// only when it loads, so the fix is to restart the process once with the right core set.
public enum BLASCore {
    public static var name: String { String(cString: openblas_get_corename()) }

    /// The core to request for this CPU when OpenBLAS fell back to a generic one, else nil.
    public static func betterCore(cpuFlags: Set<String>, detected: String) -> String? {
        guard ["prescott", "core2", "nehalem", "generic", "katmai", "atom"].contains(detected.lowercased()) else { return nil }
        if cpuFlags.contains("avx512f") && cpuFlags.contains("avx512bw") && cpuFlags.contains("avx512vl") { return "SkylakeX" }
        if cpuFlags.contains("avx2") && cpuFlags.contains("fma") { return "Haswell" }
        return nil
    }

    static func cpuFlags() -> Set<String> {
        guard let text = try? String(contentsOfFile: "/proc/cpuinfo", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("flags") }) else { return [] }
        return Set(line.split(separator: ":").last?.split(separator: " ").map(String.init) ?? [])
    }

    /// Re-executes the current program once with OPENBLAS_CORETYPE set when OpenBLAS fell back to a generic
    /// core, and with OPENBLAS_THREAD_TIMEOUT=4 and OMP_WAIT_POLICY=PASSIVE unless set: idle OpenBLAS and
    /// OpenMP threads then sleep almost at once instead of spinning while dtrain's own workers need the cores.
    /// DTRAIN_BLAS_REEXEC=0 disables it.
    public static func reexecWithBetterCoreIfNeeded() {
        let env = ProcessInfo.processInfo.environment
        guard env["DTRAIN_BLAS_REEXEC"] != "0", env["DTRAIN_BLAS_CONFIGURED"] == nil else { return }
        var changed = false
        if env["OPENBLAS_CORETYPE"] == nil, let core = betterCore(cpuFlags: cpuFlags(), detected: name) {
            setenv("OPENBLAS_CORETYPE", core, 1)
            changed = true
        }
        if env["OPENBLAS_THREAD_TIMEOUT"] == nil {
            setenv("OPENBLAS_THREAD_TIMEOUT", "4", 1)
            changed = true
        }
        // oneDNN's OpenMP threads otherwise spin after each bf16 product on the cores that dtrain's own workers
        // (attention, LoRA, element-wise) need next: a LoRA step took 2.64 s spinning vs 1.99 s passive.
        if env["OMP_WAIT_POLICY"] == nil {
            setenv("OMP_WAIT_POLICY", "PASSIVE", 1)
            changed = true
        }
        guard changed else { return }
        setenv("DTRAIN_BLAS_CONFIGURED", "1", 1)
        let args = CommandLine.arguments
        var cargs: [UnsafeMutablePointer<CChar>?] = args.map { strdup($0) } + [nil]
        execv("/proc/self/exe", &cargs)
        // execv only returns on failure: carry on with the defaults.
    }
}
