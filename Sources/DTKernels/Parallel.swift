// Splitting element-wise work and attention heads across this rank's cores. BLAS already uses them for large
// products; the rest of a step would otherwise run on one core while the others wait.
import Dispatch
import Foundation
import Synchronization

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

    /// The calling thread's share of a two-way split, following the measured speeds (rows per second) of the
    /// calling thread and of the helper thread: the cores of a shared machine do not run at the same speed.
    public nonisolated(unsafe) static var callerSpeed = 1.0, helperSpeed = 1.0

    /// Runs body on two row ranges that cover 0..<count, concurrently on the calling thread and one helper,
    /// with BLAS single-threaded; the caller's range is sized by the two threads' recent speeds (moving
    /// average of rows / second over the previous splits) and both ends are multiples of 16 rows.
    public static func splitBetweenTwoCores(_ count: Int, _ body: (Range<Int>) -> Void) {
        let share = callerSpeed / (callerSpeed + helperSpeed)
        let cut = min(max(16, Int((share * Double(count) / 16).rounded()) * 16), count - 16)
        let caller = pthread_self()
        let claimed = Atomic<Int>(0)
        let saved = BLAS.threads
        BLAS.setThreads(1)
        // Per part (0: rows 0..<cut, 1: the rest): seconds taken, and whether the calling thread ran it.
        typealias Speeds = (caller: Double, helper: Double)   // rows per second of this product
        let measured: Speeds? = withUnsafeTemporaryAllocation(of: (seconds: Double, byCaller: Bool).self, capacity: 2) { runs in
            DispatchQueue.concurrentPerform(iterations: 2) { _ in
                let isCaller = pthread_equal(pthread_self(), caller) != 0
                // The caller takes part 0 and the helper part 1; if one thread runs both iterations, its second
                // finds its part taken and runs the other (two iterations, so each part runs exactly once).
                let preferred = isCaller ? 0 : 1
                let part = claimed.bitwiseOr(1 << preferred, ordering: .relaxed).oldValue & (1 << preferred) == 0
                    ? preferred : 1 - preferred
                let start = DispatchTime.now().uptimeNanoseconds
                body(part == 0 ? 0..<cut : cut..<count)
                runs[part] = (Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9, isCaller)
            }
            guard runs[0].byCaller != runs[1].byCaller, runs[0].seconds > 0, runs[1].seconds > 0 else { return nil }
            let speed0 = Double(cut) / runs[0].seconds, speed1 = Double(count - cut) / runs[1].seconds
            return runs[0].byCaller ? (speed0, speed1) : (speed1, speed0)
        }
        BLAS.setThreads(saved)
        guard let now = measured else { return }   // one thread ran both parts
        // Moving averages of the two speeds' shares (rows per second differ from one product's shape to another's).
        callerSpeed = 0.7 * callerSpeed + 0.6 * now.caller / (now.caller + now.helper)
        helperSpeed = 0.7 * helperSpeed + 0.6 * now.helper / (now.caller + now.helper)
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
