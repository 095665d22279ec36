// Memory preflight of `dtrain train`: the per-rank estimate (frozen base before it is loaded; workspace before it
// is allocated) times the ranks on this node is compared with the memory available to it — MemAvailable, or the
// cgroup limit (v2 memory.max, v1 memory.limit_in_bytes of this process's group) minus its usage if lower — and a run that cannot fit is
// refused with the estimate and the keys that reduce it, instead of being OOM-killed later.
// DTRAIN_SKIP_MEMORY_CHECK=1 turns the check off.
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTTraining
import Foundation

public enum MemoryPreflight {
    /// Bytes this process can still allocate and where the figure comes from, or nil if unknown. `root` prefixes
    /// /proc and /sys (tests give a fake tree).
    public static func available(root: String = "") -> (bytes: Double, source: String)? {
        var best: (Double, String)?
        func consider(_ bytes: Double?, _ source: String) {
            guard let bytes, bytes >= 0 else { return }
            if best == nil || bytes < best!.0 { best = (bytes, source) }
        }
        if let meminfo = try? String(contentsOfFile: root + "/proc/meminfo", encoding: .utf8),
           let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kb = Double(line.split(separator: " ").dropFirst().first ?? "") {
            consider(kb * 1024, "MemAvailable")
        }
        // A group's usage counts the page cache of the files it read (the model); what no process maps is reclaimed
        // before anything is killed, so it counts as available.
        func stat(_ dir: String, _ key: String) -> Double {
            guard let text = try? String(contentsOfFile: dir + "/memory.stat", encoding: .utf8),
                  let line = text.split(separator: "\n").first(where: { $0.hasPrefix(key + " ") }) else { return 0 }
            return Double(line.split(separator: " ").last ?? "") ?? 0
        }
        func number(_ path: String) -> Double? {
            (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        // cgroup v2: this process's group from /proc/self/cgroup ("0::/path").
        if let groups = try? String(contentsOfFile: root + "/proc/self/cgroup", encoding: .utf8),
           let line = groups.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) {
            let dir = root + "/sys/fs/cgroup" + line.dropFirst(3)
            if let limit = number(dir + "/memory.max"), let used = number(dir + "/memory.current") {
                consider(limit - used + max(0, stat(dir, "file") - stat(dir, "file_mapped")), "cgroup memory.max")
            }
        }
        // cgroup v1: this process's memory group ("N:memory:/slurm/uid_1/job_2", as Slurm makes per job), and the
        // controller's root (a container's own group is mounted there).
        var v1 = [root + "/sys/fs/cgroup/memory"]
        if let groups = try? String(contentsOfFile: root + "/proc/self/cgroup", encoding: .utf8),
           let line = groups.split(separator: "\n").first(where: { $0.split(separator: ":").dropFirst().first?.split(separator: ",").contains("memory") == true }),
           let path = line.split(separator: ":", maxSplits: 2).last, path != "/" {
            v1.append(root + "/sys/fs/cgroup/memory" + path)
        }
        for dir in v1 {
            if let limit = number(dir + "/memory.limit_in_bytes"), limit < 1e18, let used = number(dir + "/memory.usage_in_bytes") {
                let cache = stat(dir, "total_inactive_file") + stat(dir, "total_active_file") - stat(dir, "total_mapped_file")
                consider(limit - used + max(0, cache), "cgroup memory.limit_in_bytes")
            }
        }
        return best
    }

    static var enabled: Bool { ProcessInfo.processInfo.environment["DTRAIN_SKIP_MEMORY_CHECK"] != "1" }

    /// A lower bound of the anonymous memory the frozen base takes per rank (mapped GGUF blocks cost none).
    static func baseEstimate(_ config: LlamaConfig, precision: WeightPrecision, compute: ComputePrecision, ranks: Int, sharded: Bool) -> Double {
        let embedding = Double(config.vocabSize * config.hiddenSize) * (config.tiedEmbeddings ? 1 : 2)
        let projections = Double(config.parameterCount) - embedding
        let perParameter: Double
        switch precision {
        case .fp32: perParameter = compute == .bf16 ? 2 : 4
        case .nf4: perParameter = 0.5
        case .asStored: perParameter = 0
        }
        let bytes = precision == .fp32 ? perParameter * Double(config.parameterCount) : perParameter * projections
        return sharded && ranks > 1 ? bytes / Double(ranks) : bytes
    }

    /// Refuses when `parts` (name, bytes per rank) times the ranks on this node exceed the available memory.
    /// Collective: every rank reads its figure before any rank allocates what is estimated.
    static func check(_ parts: [(String, Double)], stage: String, config: TrainConfig, runtime: Runtime) throws {
        guard enabled else { return }
        let comm = runtime.comm
        let need = parts.reduce(0) { $0 + $1.1 }
        let found = available()
        let all = perRank(found?.bytes ?? .infinity, comm: comm)
        guard let found, need * Double(comm.localSize) > all[comm.rank] else { return }
        let detail = parts.map { "\($0.0) \(gib($0.1))" }.joined(separator: ", ")
        let ranks = comm.localSize > 1 ? " × \(comm.localSize) ranks on this node" : ""
        throw CommandError("memory: \(stage) needs about \(gib(need)) per rank (\(detail))\(ranks), but \(gib(found.bytes)) is available (\(found.source), rank \(comm.rank)); reduce it with micro_batch_size (now \(config.microBatchSize)) or max_length (now \(config.maxLength)), \(config.recomputes ? "" : "recompute: true, ")method: qlora (or precision: nf4 / as-stored), placement: sharded over more ranks or nodes — or set DTRAIN_SKIP_MEMORY_CHECK=1 to try anyway")
    }

    /// `recompute: auto`: on when keeping every layer's activations (and DoRA's saved frozen products) on this node's
    /// ranks would take more than `share` of the memory available now (the base is loaded, so not counted again).
    /// Collective; every rank gets the same answer: the largest need against the smallest availability.
    /// `available`: this rank's free bytes (default: `available()`, unknown = unlimited).
    /// `layers`: the whole model's layer count when `model` is a probe of its first layers (`dtrain plan`).
    public static func chooseRecompute(_ config: TrainConfig, model: LlamaModel, comm: Communicator, shape: (batch: Int, length: Int),
                                       available mine: Double? = available()?.bytes, share: Double = 0.8,
                                       layers: Int? = nil) -> (on: Bool, reason: String) {
        let rows = shape.batch * shape.length, L = layers ?? model.layers.count
        var keepAll = ForwardWorkspace.estimatedBytes(model: model, batch: shape.batch, length: shape.length, mode: .training(recompute: false), layers: L)
        keepAll += LoRAAdapter.doraBytes(model: model, options: config.loraOptions, rows: rows, everyLayer: true) * Double(L) / Double(model.layers.count)
        let recomputing = ForwardWorkspace.estimatedBytes(model: model, batch: shape.batch, length: shape.length, mode: .training(recompute: true), layers: L)
        let need = perRank(keepAll * Double(comm.localSize), comm: comm).max() ?? keepAll
        let free = perRank(mine ?? .infinity, comm: comm).min() ?? .infinity
        let freeText = free.isFinite ? "the \(gib(free)) available" : "memory of unknown size"
        let ranks = comm.localSize > 1 ? " × \(comm.localSize) ranks on this node" : ""
        let workspace = "\(shape.batch) × \(shape.length) tokens"
        guard need > share * free else {
            return (false, "every layer's activations for \(workspace), about \(gib(keepAll)) per rank\(ranks), fit in \(freeText)")
        }
        return (true, "keeping every layer's activations for \(workspace) would take about \(gib(keepAll)) per rank\(ranks) of \(freeText); recomputing each layer in backward needs about \(gib(recomputing))")
    }

    static func gib(_ bytes: Double) -> String {
        bytes >= Double(1 << 30) ? String(format: "%.1f GiB", bytes / Double(1 << 30)) : mib(Int(min(bytes, Double(Int.max / 2))))
    }
}
