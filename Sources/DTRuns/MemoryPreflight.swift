// Memory preflight of `dtrain train`: the per-rank estimate (frozen base before it is loaded; workspace before it
// is allocated) times the ranks on this node is compared with the memory available to it — MemAvailable, or the
// cgroup limit (v2 memory.max, v1 memory.limit_in_bytes) minus its usage if lower — and a run that cannot fit is
// refused with the estimate and the keys that reduce it, instead of being OOM-killed later.
// DTRAIN_SKIP_MEMORY_CHECK=1 turns the check off.
import DTKernels
import DTModel
import DTTraining
import Foundation

enum MemoryPreflight {
    /// Bytes this process can still allocate and where the figure comes from, or nil if unknown.
    static func available() -> (bytes: Double, source: String)? {
        var best: (Double, String)?
        func consider(_ bytes: Double?, _ source: String) {
            guard let bytes, bytes >= 0 else { return }
            if best == nil || bytes < best!.0 { best = (bytes, source) }
        }
        if let meminfo = try? String(contentsOfFile: "/proc/meminfo", encoding: .utf8),
           let line = meminfo.split(separator: "\n").first(where: { $0.hasPrefix("MemAvailable:") }),
           let kb = Double(line.split(separator: " ").dropFirst().first ?? "") {
            consider(kb * 1024, "MemAvailable")
        }
        func number(_ path: String) -> Double? {
            (try? String(contentsOfFile: path, encoding: .utf8)).flatMap { Double($0.trimmingCharacters(in: .whitespacesAndNewlines)) }
        }
        // cgroup v2: this process's group from /proc/self/cgroup ("0::/path"); v1: the memory controller's root.
        if let groups = try? String(contentsOfFile: "/proc/self/cgroup", encoding: .utf8),
           let line = groups.split(separator: "\n").first(where: { $0.hasPrefix("0::") }) {
            let dir = "/sys/fs/cgroup" + line.dropFirst(3)
            if let limit = number(dir + "/memory.max"), let used = number(dir + "/memory.current") { consider(limit - used, "cgroup memory.max") }
        }
        if let limit = number("/sys/fs/cgroup/memory/memory.limit_in_bytes"), limit < 1e18,
           let used = number("/sys/fs/cgroup/memory/memory.usage_in_bytes") {
            consider(limit - used, "cgroup memory.limit_in_bytes")
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
        throw CommandError("memory: \(stage) needs about \(gib(need)) per rank (\(detail))\(ranks), but \(gib(found.bytes)) is available (\(found.source), rank \(comm.rank)); reduce it with micro_batch_size (now \(config.microBatchSize)) or max_length (now \(config.maxLength)), recompute: true, method: qlora (or precision: nf4 / as-stored), placement: sharded over more ranks or nodes — or set DTRAIN_SKIP_MEMORY_CHECK=1 to try anyway")
    }

    static func gib(_ bytes: Double) -> String {
        bytes >= Double(1 << 30) ? String(format: "%.1f GiB", bytes / Double(1 << 30)) : mib(Int(min(bytes, Double(Int.max / 2))))
    }
}
