// Splitting element-wise work and attention heads across this rank's cores. BLAS already uses them for large
// products; the rest of a step would otherwise run on one core while the others wait.
import Dispatch

public enum Parallel {
    /// Threads this rank may use (set with the BLAS thread count).
    public nonisolated(unsafe) static var workers = 1

    /// Runs body(worker, range) over `count` items split into at most `workers` contiguous ranges
    /// (inline when 1); `worker` < workers indexes per-worker scratch.
    @inline(__always)
    public static func ranges(_ count: Int, minimumPerWorker: Int = 1, _ body: (Int, Range<Int>) -> Void) {
        let n = min(workers, max(1, count / max(1, minimumPerWorker)))
        if n <= 1 { body(0, 0..<count); return }
        DispatchQueue.concurrentPerform(iterations: n) { w in
            body(w, (count * w / n)..<(count * (w + 1) / n))
        }
    }

    /// Runs `body` with BLAS single-threaded on each of the workers (for many small products in parallel).
    public static func withSingleThreadedBLAS(_ count: Int, _ body: (Int, Range<Int>) -> Void) {
        guard workers > 1, count > 1 else { body(0, 0..<count); return }
        let saved = BLAS.threads
        BLAS.setThreads(1)
        ranges(count, body)
        BLAS.setThreads(saved)
    }
}
