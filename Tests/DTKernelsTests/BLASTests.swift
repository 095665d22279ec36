// The BLAS wrapper's row-major convention against the naive triple loop, for every transpose combination
// and odd shapes (this also catches a miscomputing OpenBLAS kernel on the machine).
import DTKernels
import XCTest

final class BLASTests: XCTestCase {
    /// Invariant: BLAS.gemm == naiveGemm for all transposes, with leading dimensions wider than the matrix.
    func testGemmMatchesNaiveReference() {
        checkAgainstNaive([(1, 1, 1), (7, 5, 3), (33, 17, 65), (64, 128, 96), (130, 3, 257)])
    }

    /// Invariant: a narrow product that `gemm` splits across cores itself (by rows of C, or by columns when C is
    /// short and wide; single-threaded OpenBLAS per part) equals the naive product, for every transpose.
    func testSplitNarrowProductsMatchNaiveReference() {
        let (workers, threads) = (Parallel.workers, BLAS.threads)
        BLAS.configureThreads(2)
        defer { BLAS.setThreads(threads); Parallel.workers = workers }
        let shapes = [(301, 8, 600), (8, 301, 600), (257, 520, 9), (600, 7, 300)]
        for (m, n, k) in shapes { XCTAssertTrue(BLAS.splitsAcrossCores(m: m, n: n, k: k), "\(m)x\(n)x\(k) is split") }
        XCTAssertFalse(BLAS.splitsAcrossCores(m: 1024, n: 1536, k: 576), "wide products keep OpenBLAS's threading")
        checkAgainstNaive(shapes)
    }

    /// Invariant: a layer-sized product split in two uneven row ranges (shares following the cores' measured
    /// speeds) equals the naive product, for every transpose, also after the shares have moved off one half.
    func testUnevenTwoCoreSplitMatchesNaiveReference() {
        let (workers, threads) = (Parallel.workers, BLAS.threads)
        BLAS.configureThreads(2)
        defer { BLAS.setThreads(threads); Parallel.workers = workers }
        let shapes = [(600, 513, 520), (517, 530, 512)]
        for (m, n, k) in shapes { XCTAssertTrue(BLAS.splitsUnevenly(m: m, n: n, k: k), "\(m)x\(n)x\(k) is split unevenly") }
        XCTAssertFalse(BLAS.splitsUnevenly(m: 1024, n: 49152, k: 576), "the LM head keeps OpenBLAS's threading")
        for (callerSpeed, helperSpeed) in [(3.0, 1.0), (1.0, 5.0)] {
            Parallel.callerSpeed = callerSpeed; Parallel.helperSpeed = helperSpeed
            checkAgainstNaive(shapes)
        }
        Parallel.callerSpeed = 1; Parallel.helperSpeed = 1
    }

    func checkAgainstNaive(_ shapes: [(Int, Int, Int)]) {
        var seed: UInt64 = 7
        func rnd() -> Float { seed = seed &* 6364136223846793005 &+ 1442695040888963407; return Float(Int64(bitPattern: seed >> 11) % 2000) / 1000 - 1 }
        for (m, n, k) in shapes {
            for ta in [Transpose.noTrans, .trans] {
                for tb in [Transpose.noTrans, .trans] {
                    let lda = (ta == .noTrans ? k : m) + 2, ldb = (tb == .noTrans ? n : k) + 1, ldc = n + 3
                    let a = (0..<(ta == .noTrans ? m : k) * lda).map { _ in rnd() }
                    let b = (0..<(tb == .noTrans ? k : n) * ldb).map { _ in rnd() }
                    var c1 = (0..<m * ldc).map { _ in rnd() }, c2 = c1
                    BLAS.gemm(ta, tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb, beta: 0.25, c: &c1, ldc: ldc)
                    BLAS.naiveGemm(ta, tb, m: m, n: n, k: k, alpha: 0.5, a: a, lda: lda, b: b, ldb: ldb, beta: 0.25, c: &c2, ldc: ldc)
                    for i in 0..<m { for j in 0..<n {
                        XCTAssertEqual(c1[i * ldc + j], c2[i * ldc + j], accuracy: 1e-4 * Float(k), "\(m)x\(n)x\(k) \(ta) \(tb)")
                    } }
                }
            }
        }
    }

    /// Invariant: a CPU that OpenBLAS failed to recognise gets a real kernel; a recognised one is left alone.
    func testBetterCoreSelection() {
        XCTAssertEqual(BLASCore.betterCore(cpuFlags: ["avx512f", "avx512bw", "avx512vl", "avx2", "fma"], detected: "Prescott"), "SkylakeX")
        XCTAssertEqual(BLASCore.betterCore(cpuFlags: ["avx2", "fma"], detected: "Prescott"), "Haswell")
        XCTAssertNil(BLASCore.betterCore(cpuFlags: ["avx2", "fma"], detected: "Haswell"))
        XCTAssertNil(BLASCore.betterCore(cpuFlags: ["sse3"], detected: "Prescott"))
    }
}
