// What every command sets up: the communicator, BLAS threads, the model and its tokenizer.
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTTokenizer
import Foundation

public enum DefaultModel {
    public static let fileName = "SmolLM2-135M-Instruct.Q4_1.gguf"
    public static let sha256 = "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"
    /// $DTRAIN_MODEL, else ~/.cache/dtrain/models/<fileName> (put there by launch/setup.sh).
    public static var path: String {
        let env = ProcessInfo.processInfo.environment
        if let p = env["DTRAIN_MODEL"], !p.isEmpty { return p }
        let cache = env["DTRAIN_CACHE"] ?? ((env["HOME"] ?? "/root") + "/.cache/dtrain")
        return cache + "/models/" + fileName
    }
}

/// Standard error output; only rank 0 prints progress.
public enum Console {
    public static func error(_ s: String) { StopSignals.standardError(s + "\n") }
    public static func out(_ s: String, terminator: String = "\n") {
        FileHandle.standardOutput.write((s + terminator).data(using: .utf8)!)
    }
}

public final class Runtime {
    public let comm: Communicator
    public let threads: Int

    public init(threads: Int? = nil) {
        // Past `ulimit -f` a write must fail with EFBIG (reported, previous checkpoint kept), not kill us.
        signal(SIGXFSZ, SIG_IGN)
        comm = Launcher.communicator()
        self.threads = threads ?? Launcher.threadsPerRank(localRanks: comm.localSize)
        BLAS.configureThreads(self.threads)
    }

    /// Runs `body`, turning any error into a clean stop of every rank with the message.
    /// A run stopped by a signal (its checkpoint written) ends every rank with StopSignals.exitStatus, after a
    /// barrier so no rank exits while rank 0 still writes.
    public func run(_ body: () throws -> Void) {
        do { try body() } catch let stopped as StoppedBySignal {
            log("dtrain: \(stopped)")
            comm.barrier()
            StopSignals.exitAfterStop()
        } catch {
            if comm.size == 1 {
                Console.error("error: \(error)")
                exit(1)
            }
            comm.abort("error (rank \(comm.rank) of \(comm.size)): \(error)", code: 1)
        }
    }

    public func log(_ s: String) { if comm.isRoot { Console.error(s) } }
}

public struct LoadedModel {
    public let model: LlamaModel
    public let tokenizer: Tokenizer
    public let path: String
}

public enum ModelLoader {
    public static func tokenizer(for source: ModelSource) throws -> Tokenizer {
        if let g = source.gguf { return try Tokenizer(gguf: g) }
        let path = (source.path as NSString).appendingPathComponent("tokenizer.json")
        guard FileManager.default.fileExists(atPath: path) else {
            throw FormatError(file: path, location: "", "missing: a Hugging Face model directory needs tokenizer.json")
        }
        return try Tokenizer(tokenizerJSON: path)
    }

    /// `beforeWeights` sees the model's configuration after the headers and tokenizer are read, before the
    /// weights are (the memory preflight).
    public static func load(_ path: String?, precision: WeightPrecision = .fp32, compute: ComputePrecision = .fp32,
                            maxPositions: Int? = nil, placement: Placement = .replicated, comm: Communicator? = nil,
                            beforeWeights: (LlamaConfig) throws -> Void = { _ in },
                            report: ((String) -> Void)? = nil) throws -> LoadedModel {
        let p = path ?? DefaultModel.path
        if path == nil && !FileManager.default.fileExists(atPath: p) {
            throw CommandError("the default model is not at \(p); run launch/setup.sh (or pass --model FILE)")
        }
        let source = try ModelSource(path: p)
        let tokenizer = try tokenizer(for: source)
        guard tokenizer.vocabularySize <= source.config.vocabSize else {
            throw FormatError(file: p, location: "", "tokenizer has \(tokenizer.vocabularySize) tokens but the model's vocabulary is \(source.config.vocabSize)")
        }
        try beforeWeights(source.config)
        let line = report.map { LoadProgressLine(report: $0) }
        return LoadedModel(model: try LlamaModel(source: source, precision: precision, compute: compute, maxPositions: maxPositions,
                                                 placement: placement, comm: comm, progress: line?.update),
                           tokenizer: tokenizer, path: p)
    }
}

/// The progress line of a load that takes more than a few seconds: first after 3 s, then every 5 s and once at
/// the end, e.g. `loading the base: 96/226 matrices, 1.02 of 2.46 GiB, 181 MiB/s, ETA 8s`.
final class LoadProgressLine {
    let report: (String) -> Void
    let start = Date()
    var printed: Date?

    init(report: @escaping (String) -> Void) { self.report = report }

    func update(_ p: LlamaModel.LoadProgress) {
        let now = Date(), elapsed = now.timeIntervalSince(start)
        let done = p.tensorsDone == p.tensors
        guard elapsed >= 3, done || printed.map({ now.timeIntervalSince($0) >= 5 }) ?? true else { return }
        printed = now
        let gib = { (b: Int) in String(format: "%.2f", Double(b) / 1_073_741_824) }
        let rate = Double(p.bytesDone) / max(elapsed, 1e-9)
        let tail = String(format: "%.0f MiB/s, ", rate / 1_048_576)
            + (done ? String(format: "done in %.1f s", elapsed) : formatDuration(Double(p.bytes - p.bytesDone) / max(rate, 1)))
        report("loading the base: \(p.tensorsDone)/\(p.tensors) matrices, \(gib(p.bytesDone)) of \(gib(p.bytes)) GiB, " + tail)
    }
}
