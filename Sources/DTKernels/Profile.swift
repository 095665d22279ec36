// Wall time per named stage of a step, for `dtrain bench … --profile`. Off by default: one branch per stage.
// Stages are measured on the calling (main) thread; work inside them may use all of this rank's cores.
import Dispatch

public enum Profile {
    public nonisolated(unsafe) static var enabled = false
    nonisolated(unsafe) private static var seconds: [String: Double] = [:]
    nonisolated(unsafe) private static var calls: [String: Int] = [:]

    @inline(__always)
    public static func measure<R>(_ stage: @autoclosure () -> String, _ body: () throws -> R) rethrows -> R {
        guard enabled else { return try body() }
        let start = DispatchTime.now().uptimeNanoseconds
        let result = try body()
        let name = stage()
        seconds[name, default: 0] += Double(DispatchTime.now().uptimeNanoseconds - start) * 1e-9
        calls[name, default: 0] += 1
        return result
    }

    public static func reset() { seconds = [:]; calls = [:] }

    /// (stage, seconds, calls), largest first.
    public static func report() -> [(stage: String, seconds: Double, calls: Int)] {
        seconds.map { (stage: $0.key, seconds: $0.value, calls: calls[$0.key] ?? 0) }.sorted { $0.seconds > $1.seconds }
    }
}
