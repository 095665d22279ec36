// bf16 matrix products with fp32 accumulation and output (oneDNN's matmul primitive, which picks the
// AVX512-BF16 or AMX kernel for this CPU), fp32 ↔ bf16 conversion, and the CPU check that decides
// whether the bf16 path runs. Same row-major convention as BLAS.swift; bf16 values are raw UInt16 bits.
import CBF16
import Foundation
import Synchronization

/// What the user asked for (`compute:` key, `--compute` flag).
public enum ComputeRequest: String, Sendable, CaseIterable {
    /// bf16 when the CPU has AVX512_BF16 or AMX, else fp32.
    case auto
    case bf16
    case fp32
}

/// The precision the frozen-weight products actually run in.
public enum ComputePrecision: String, Sendable {
    case fp32, bf16

    /// Resolves a request on this CPU; `bf16` on a CPU without bf16 instructions is an error for the user.
    public static func resolve(_ request: ComputeRequest) throws -> ComputePrecision {
        switch request {
        case .fp32: return .fp32
        case .auto: return CPUFeatures.hasBF16Products ? .bf16 : .fp32
        case .bf16:
            guard CPUFeatures.hasBF16Products else { throw BF16Unavailable() }
            return .bf16
        }
    }
}

extension ComputePrecision {
    /// Path and kernel in a few words, for every bench line: "bf16 oneDNN gemm:jit" or "fp32 OpenBLAS Cooperlake".
    public var kernelTag: String {
        switch self {
        case .fp32: "fp32 OpenBLAS \(BLASCore.name)"
        case .bf16: "bf16 oneDNN \(BF16.kernelName)"
        }
    }

    /// Which path and kernel run the products, for the start-up banner.
    public var kernelDescription: String {
        switch self {
        case .fp32: "fp32 products (OpenBLAS \(BLASCore.name))"
        case .bf16: "bf16 products, fp32 accumulation (oneDNN \(BF16.kernelName); \(CPUFeatures.amxBF16 ? "AMX-BF16" : "AVX512-BF16"))"
        }
    }
}

public struct BF16Unavailable: Error, CustomStringConvertible {
    public var description: String {
        "compute: bf16 needs a CPU with AVX512_BF16 or AMX-BF16, and this one has neither (\(CPUFeatures.summary)); use compute: auto or fp32"
    }
}

public enum CPUFeatures {
    /// Flags treated as absent (tests, and DTRAIN_HIDE_CPU_FEATURES=avx512_bf16,amx_bf16 to try the fp32 path).
    public nonisolated(unsafe) static var hidden: Set<String> = Set(
        (ProcessInfo.processInfo.environment["DTRAIN_HIDE_CPU_FEATURES"] ?? "").split(separator: ",").map(String.init)) {
        didSet { (avx512BF16, amxBF16) = visible() }
    }

    /// cpuid once: in a VM every cpuid is a trip to the hypervisor, far too slow for a per-row check.
    private static let hardware = (avx512BF16: dt_cpu_has_avx512bf16() != 0, amxBF16: dt_cpu_has_amx_bf16() != 0)
    private static func visible() -> (Bool, Bool) {
        (hardware.avx512BF16 && !hidden.contains("avx512_bf16"), hardware.amxBF16 && !hidden.contains("amx_bf16"))
    }

    public private(set) nonisolated(unsafe) static var avx512BF16 = visible().0
    public private(set) nonisolated(unsafe) static var amxBF16 = visible().1
    public static var hasBF16Products: Bool { avx512BF16 || amxBF16 }
    public static var summary: String {
        "avx512_bf16 \(avx512BF16 ? "yes" : "no"), amx_bf16 \(amxBF16 ? "yes" : "no")"
    }
}

/// An owned buffer of bf16 values.
public final class BF16Buffer {
    public let count: Int
    public let pointer: UnsafeMutablePointer<UInt16>

    public init(count: Int) {
        precondition(count >= 0)
        self.count = count
        pointer = .allocate(capacity: max(count, 1))
        pointer.initialize(repeating: 0, count: max(count, 1))
    }

    /// The fp32 values rounded to bf16.
    public convenience init(_ values: UnsafePointer<Float>, count: Int) {
        self.init(count: count)
        BF16.convert(values, ld: count, into: pointer, rows: 1, cols: count)
    }

    deinit { pointer.deallocate() }
}

public enum BF16 {
    /// dst (rows, cols) contiguous = bf16(src (rows, cols) with leading dimension `ld`), rows split across workers.
    public static func convert(_ src: UnsafePointer<Float>, ld: Int, into dst: UnsafeMutablePointer<UInt16>, rows: Int, cols: Int) {
        let vector: Int32 = CPUFeatures.avx512BF16 ? 1 : 0
        Parallel.ranges(rows, minimumPerWorker: max(1, 16384 / max(1, cols))) { _, part in
            dt_f32_to_bf16(src + part.lowerBound * ld, ld, dst + part.lowerBound * cols, cols, part.count, cols, vector)
        }
    }

    /// dst (count) = bf16(src) on the calling thread (for use inside an already parallel region).
    @inline(__always)
    public static func convertHere(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<UInt16>, count: Int) {
        dt_f32_to_bf16(src, count, dst, count, 1, count, CPUFeatures.avx512BF16 ? 1 : 0)
    }

    /// GGUF Q4_1 / Q8_0 blocks (32 weights each) straight to bf16; needs `CPUFeatures.avx512BF16`.
    public static func fromQ4_1(_ src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<UInt16>) {
        guard CPUFeatures.avx512BF16 else { fatalError("AVX512-BF16 block expansion on a CPU without AVX512_BF16") }
        dt_q4_1_to_bf16(src, blocks, dst)
    }

    public static func fromQ8_0(_ src: UnsafeRawPointer, blocks: Int, into dst: UnsafeMutablePointer<UInt16>) {
        guard CPUFeatures.avx512BF16 else { fatalError("AVX512-BF16 block expansion on a CPU without AVX512_BF16") }
        dt_q8_0_to_bf16(src, blocks, dst)
    }

    /// NF4 blocks of 64 (32 bytes of codes, element 2i in the high nibble), one scale each, to bf16.
    public static func fromNF4(codes: UnsafePointer<UInt8>, scales: UnsafePointer<Float>, blocks: Int,
                               codebook: UnsafePointer<Float>, into dst: UnsafeMutablePointer<UInt16>) {
        guard CPUFeatures.avx512BF16 else { fatalError("AVX512-BF16 block expansion on a CPU without AVX512_BF16") }
        dt_nf4_to_bf16(codes, scales, blocks, codebook, dst)
    }

    /// The scalar conversion (same rounding), kept as the reference for tests.
    public static func convertScalar(_ src: UnsafePointer<Float>, into dst: UnsafeMutablePointer<UInt16>, count: Int) {
        dt_f32_to_bf16(src, count, dst, count, 1, count, 0)
    }

    public static func toFloat(_ src: UnsafePointer<UInt16>, into dst: UnsafeMutablePointer<Float>, count: Int) {
        dt_bf16_to_f32(src, dst, count)
    }

    @inline(__always) public static func float(_ bits: UInt16) -> Float { Float(bitPattern: UInt32(bits) << 16) }

    struct Shape: Hashable {
        var n: Int, k: Int, transA: Bool, lda: Int, transB: Bool, ldb: Int, ldc: Int, accumulate: Bool
    }
    /// One primitive per shape (the row count is given per run), created on first use, with oneDNN's name
    /// of the implementation it chose (e.g. "gemm:jit", "brg:avx512_core_bf16").
    private static let primitives = Mutex<[Shape: (primitive: OpaquePointer, implementation: String)]>([:])

    private static func primitive(_ s: Shape) -> (primitive: OpaquePointer, implementation: String) {
        primitives.withLock { cache in
            if let p = cache[s] { return p }
            var impl = [CChar](repeating: 0, count: 128), error = [CChar](repeating: 0, count: 256)
            let created = dt_matmul_create(s.n, s.k, s.transA ? 1 : 0, s.lda, s.transB ? 1 : 0, s.ldb, s.ldc, s.accumulate ? 1 : 0,
                                           &impl, 128, &error, 256)
            guard let created else {
                fatalError("oneDNN could not create a bf16 matmul for n \(s.n), k \(s.k): \(String(cString: error))")
            }
            cache[s] = (created, String(cString: impl))
            return cache[s]!
        }
    }

    /// C (m, n) = op(A) (m, k) · op(B) (k, n) (+ C when `accumulate`), A and B bf16, C fp32, row-major.
    public static func gemm(_ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int,
                            a: UnsafePointer<UInt16>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
                            accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) {
        guard m > 0, n > 0 else { return }
        let shape = Shape(n: n, k: k, transA: ta == .trans, lda: lda, transB: tb == .trans, ldb: ldb, ldc: ldc, accumulate: accumulate)
        let status = dt_matmul_run(primitive(shape).primitive, m, a, b, c)
        if status != 0 { fatalError("oneDNN matmul (\(m) × \(n) × \(k)) failed with status \(status)") }
    }

    /// The implementation oneDNN picks for a layer-sized product (1536 × 576, weights transposed) on this CPU.
    public static var kernelName: String {
        primitive(Shape(n: 1536, k: 576, transA: false, lda: 576, transB: true, ldb: 576, ldc: 1536, accumulate: false)).implementation
    }

    /// Threads of oneDNN's calls (OpenMP) made from this thread.
    public static func setThreads(_ n: Int) { dt_set_onednn_threads(Int32(n)) }

    /// Slow reference with the same signature as `gemm`: the bf16 inputs widened (exactly) to fp32, then
    /// BLAS.naiveGemm (Double accumulation).
    public static func naiveGemm(_ ta: Transpose, _ tb: Transpose, m: Int, n: Int, k: Int,
                                 a: UnsafePointer<UInt16>, lda: Int, b: UnsafePointer<UInt16>, ldb: Int,
                                 accumulate: Bool, c: UnsafeMutablePointer<Float>, ldc: Int) {
        var a32 = [Float](repeating: 0, count: (ta == .noTrans ? m : k) * lda)
        var b32 = [Float](repeating: 0, count: (tb == .noTrans ? k : n) * ldb)
        toFloat(a, into: &a32, count: a32.count)
        toFloat(b, into: &b32, count: b32.count)
        BLAS.naiveGemm(ta, tb, m: m, n: n, k: k, a: a32, lda: lda, b: b32, ldb: ldb, beta: accumulate ? 1 : 0, c: c, ldc: ldc)
    }
}
