// Run metrics: one JSON line per logged step in metrics.jsonl and the same scalars as TensorBoard events
// (rank 0 only), and memory figures.
import DTTraining
import Foundation
#if canImport(Glibc)
import Glibc
#endif

final class MetricsLog {
    let path: String
    let enabled: Bool
    let tensorboard: TensorBoardWriter?

    init(directory: String, enabled: Bool, tensorboard: Bool) {
        path = (directory as NSString).appendingPathComponent("metrics.jsonl")
        self.enabled = enabled
        self.tensorboard = enabled && tensorboard ? TensorBoardWriter(directory: directory) : nil
    }

    /// The base model's validation loss, before any step.
    func baseValidation(_ loss: Double) { tensorboard?.scalars(step: 0, [("valid/loss", loss)]) }

    func append(_ log: StepLog) {
        guard enabled else { return }
        tensorboard?.scalars(step: log.step, [("train/loss", log.loss), ("train/learning_rate", log.learningRate),
                                               ("train/grad_norm", log.gradNorm), ("train/tokens_per_second", log.tokensPerSecond)]
                                              + (log.validLoss.map { [("valid/loss", $0)] } ?? []))
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
    /// Current resident set size of this process (/proc/self/statm), 0 if unavailable.
    public static func residentBytes() -> Int64 {
        guard let text = try? String(contentsOfFile: "/proc/self/statm", encoding: .utf8) else { return 0 }
        let fields = text.split(separator: " ")
        guard fields.count > 1, let pages = Int64(fields[1]) else { return 0 }
        return pages * Int64(sysconf(Int32(_SC_PAGESIZE)))
    }

    /// Peak resident set size since the last `resetPeak()` (/proc/self/status VmHWM), nil if unavailable.
    public static func peakSinceReset() -> Int64? {
        guard let text = try? String(contentsOfFile: "/proc/self/status", encoding: .utf8),
              let line = text.split(separator: "\n").first(where: { $0.hasPrefix("VmHWM:") }),
              let kb = Int64(line.split(whereSeparator: { $0 == " " || $0 == "\t" }).dropFirst().first ?? "") else { return nil }
        return kb * 1024
    }

    /// Resets VmHWM to the current resident set size (Linux ≥ 4.0: "5" into /proc/self/clear_refs); false if the
    /// kernel refuses, and then `peakSinceReset` is the process's peak.
    @discardableResult
    public static func resetPeak() -> Bool {
        let fd = open("/proc/self/clear_refs", O_WRONLY)
        guard fd >= 0 else { return false }
        defer { close(fd) }
        return write(fd, "5", 1) == 1
    }

    /// Returns the heap memory malloc keeps after frees to the system (glibc's malloc_trim(0), looked up at run
    /// time: Swift's Glibc module does not declare it); false without it.
    @discardableResult
    public static func releaseFreedHeap() -> Bool {
        guard let symbol = dlsym(nil, "malloc_trim") else { return false }
        typealias Trim = @convention(c) (Int) -> Int32
        return unsafeBitCast(symbol, to: Trim.self)(0) == 1
    }

    /// Peak resident set size of this process (getrusage).
    public static func peakResidentBytes() -> Int64 {
        var usage = rusage()
        getrusage(__rusage_who_t(RUSAGE_SELF.rawValue), &usage)
        return Int64(usage.ru_maxrss) * 1024
    }
}
