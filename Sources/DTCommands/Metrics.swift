// Run metrics: one JSON line per logged step in metrics.jsonl (rank 0 only), and peak memory.
import DTTraining
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class MetricsLog {
    let path: String
    let enabled: Bool

    init(directory: String, enabled: Bool) {
        path = (directory as NSString).appendingPathComponent("metrics.jsonl")
        self.enabled = enabled
    }

    func append(_ log: StepLog) {
        guard enabled else { return }
        var fields = [String(format: "\"step\": %d", log.step), String(format: "\"loss\": %.6f", log.loss),
                      String(format: "\"lr\": %.6e", log.learningRate), String(format: "\"grad_norm\": %.6f", log.gradNorm),
                      String(format: "\"tokens_per_second\": %.1f", log.tokensPerSecond), String(format: "\"seconds\": %.3f", log.secondsPerStep)]
        if let v = log.validLoss { fields.append(String(format: "\"eval_loss\": %.6f", v)) }
        let line = "{" + fields.joined(separator: ", ") + "}\n"
        if let handle = FileHandle(forWritingAtPath: path) {
            handle.seekToEndOfFile()
            handle.write(Data(line.utf8))
            handle.closeFile()
        } else {
            FileManager.default.createFile(atPath: path, contents: Data(line.utf8))
        }
    }
}

public enum MemoryStats {
    /// Peak resident set size of this process (getrusage).
    public static func peakResidentBytes() -> Int64 {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Int64(usage.ru_maxrss) * 1024
    }
}
