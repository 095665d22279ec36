// Checkpoints: `checkpoint-NNNNNN/` holds the adapter (PEFT files), optimizer.safetensors (AdamW moments),
// trainer_state.json (step, samples seen, world size, metrics) and config.yaml. Written by rank 0 through
// AtomicDirectory, so a directory named checkpoint-* is always complete; the last K are kept.
import DTFormats
import Foundation

public struct TrainerState: Codable, Equatable {
    public var step: Int
    public var samplesSeen: Int
    public var optimizerStep: Int
    public var worldSize: Int
    public var bestValidLoss: Double?
    public var lastLoss: Double?
    /// Steps skipped for a non-finite loss or gradient norm (nan_policy: skip); absent in older checkpoints.
    public var skippedSteps: Int?

    /// Every count in range for a run of `totalSteps` steps (the file is named in the error).
    public func validate(file: String, totalSteps: Int) throws {
        func check(_ key: String, _ value: Int, _ low: Int, _ high: Int?, _ note: String = "") throws {
            guard value < low || (high.map { value > $0 } ?? false) else { return }
            throw FormatError.key(file, key, "expected an integer in [\(low), \(high.map(String.init) ?? "…")], found \(value)\(note)")
        }
        try check("step", step, 0, totalSteps, " (this run has \(totalSteps) steps)")
        try check("optimizerStep", optimizerStep, 0, step)
        try check("skippedSteps", skippedSteps ?? 0, 0, step)
        try check("samplesSeen", samplesSeen, 0, nil)
        try check("worldSize", worldSize, 1, 1 << 24)
    }
}

public enum Checkpoint {
    public static func name(step: Int) -> String { String(format: "checkpoint-%06d", step) }

    public static func save(directory: String, adapterFiles: [(String, Data)], arena: ParameterArena, state: TrainerState,
                            configYAML: String) throws {
        let moments = SafetensorsWriter.encode([
            .init(name: "exp_avg", shape: [arena.count], values: Array(arena.firstMoment.buffer)),
            .init(name: "exp_avg_sq", shape: [arena.count], values: Array(arena.secondMoment.buffer)),
        ], metadata: ["format": "dtrain", "optimizer": "adamw"])
        let stateData = try stateJSON(state)
        try AtomicDirectory.write(directory, files: adapterFiles + [("optimizer.safetensors", moments),
                                                                     ("trainer_state.json", stateData),
                                                                     ("config.yaml", Data(configYAML.utf8))])
    }

    /// trainer_state.json's bytes (also written beside the final adapter, so exports can name the steps).
    public static func stateJSON(_ state: TrainerState) throws -> Data {
        let encoder = JSONEncoder()
        encoder.outputFormatting = [.prettyPrinted, .sortedKeys]
        return try encoder.encode(state)
    }

    /// Complete checkpoints in `output`, oldest first.
    public static func list(_ output: String) -> [(step: Int, path: String)] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
        return names.compactMap { n -> (Int, String)? in
            guard n.hasPrefix("checkpoint-"), let step = Int(n.dropFirst("checkpoint-".count)) else { return nil }
            let path = (output as NSString).appendingPathComponent(n)
            guard FileManager.default.fileExists(atPath: (path as NSString).appendingPathComponent("trainer_state.json")) else { return nil }
            return (step, path)
        }.sorted { $0.0 < $1.0 }
    }

    /// Removes all but the newest `keep` checkpoints.
    public static func prune(_ output: String, keep: Int) {
        let all = list(output)
        for c in all.dropLast(keep) { try? FileManager.default.removeItem(atPath: c.path) }
    }

    public static func readState(_ dir: String) throws -> TrainerState {
        let path = (dir as NSString).appendingPathComponent("trainer_state.json")
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(file: path, location: "", "missing: not a complete checkpoint")
        }
        do { return try JSONDecoder().decode(TrainerState.self, from: data) } catch {
            throw FormatError(file: path, location: "", "malformed trainer state: \(error)")
        }
    }

    /// Loads the AdamW moments into the arena (sizes must match, values finite, second moments ≥ 0).
    public static func loadMoments(_ dir: String, into arena: ParameterArena) throws {
        let path = (dir as NSString).appendingPathComponent("optimizer.safetensors")
        let file = try SafetensorsFile(path: path)
        for (name, target) in [("exp_avg", arena.firstMoment), ("exp_avg_sq", arena.secondMoment)] {
            let values = try file.floats(name)
            guard values.count == arena.count else {
                throw FormatError.key(path, name, "expected \(arena.count) values, found \(values.count) (a different adapter?)")
            }
            try FormatError.requireFinite(values, file: path, key: name)
            if name == "exp_avg_sq", let i = values.firstIndex(where: { $0 < 0 }) {
                throw FormatError.key(path, name, "value \(i) is \(values[i]) (a second moment is never negative)")
            }
            target.pointer.update(from: values, count: values.count)
        }
    }

    /// Refuses to start a run in `output` when it holds another run's checkpoints or final/, unless the run
    /// resumes one of those checkpoints (`resume: auto` with a checkpoint there, or a checkpoint path) or
    /// `overwrite` is set. Called before anything is written, so a refused run leaves the directory untouched.
    public static func checkOutput(_ output: String, resume: ResumeFrom, overwrite: Bool) throws {
        var isDirectory: ObjCBool = false
        guard FileManager.default.fileExists(atPath: output, isDirectory: &isDirectory) else { return }
        guard isDirectory.boolValue else {
            throw FormatError(file: output, location: "", "the output exists and is not a directory")
        }
        let resumes = switch resume { case .never: false; case .auto: !list(output).isEmpty; case .checkpoint: true }
        if overwrite || resumes { return }
        let previous = previousRun(output)
        guard !previous.isEmpty else { return }
        let shown = previous.prefix(3).joined(separator: ", ") + (previous.count > 3 ? ", …" : "")
        throw FormatError(file: output, location: "", "holds another run (\(shown)); pass --resume auto to continue it, --overwrite true to replace it (resume: auto / overwrite: true in the config), or choose another output directory")
    }

    /// A previous run's checkpoints and final adapter in `output` (names, sorted).
    static func previousRun(_ output: String) -> [String] {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
        return names.filter { $0.hasPrefix("checkpoint-") || $0 == "final" }.sorted().map { $0 == "final" ? "final/" : $0 }
    }

    /// With `overwrite`: removes the previous run's checkpoints, final/, metrics.jsonl and TensorBoard event
    /// files (a probe's feature caches stay: they are keyed by model and data).
    public static func clearPreviousRun(_ output: String) throws {
        let names = (try? FileManager.default.contentsOfDirectory(atPath: output)) ?? []
        for name in names where name.hasPrefix("checkpoint-") || name == "final" || name == "metrics.jsonl"
            || name.hasPrefix("events.out.tfevents.") || name.hasPrefix(".tmp-checkpoint-") || name.hasPrefix(".tmp-final-") {
            let path = (output as NSString).appendingPathComponent(name)
            do { try FileManager.default.removeItem(atPath: path) } catch {
                throw WriteError(path: path, "cannot remove the previous run's file (\(error.localizedDescription))")
            }
        }
    }

    /// The configuration a checkpoint was made with (its config.yaml, read as strictly as a run.yaml).
    public static func savedConfig(_ dir: String) throws -> TrainConfig {
        let path = (dir as NSString).appendingPathComponent("config.yaml")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw FormatError(file: path, location: "", "missing: not a complete checkpoint")
        }
        var saved = TrainConfig()
        try saved.apply(yaml: text, source: path)
        return saved
    }

    /// Checks that a checkpoint's config agrees with the current one on every key that changes the math (the
    /// keys whose table entry says `.mustMatch`).
    public static func checkCompatible(_ dir: String, with config: TrainConfig) throws {
        let saved = try savedConfig(dir), path = (dir as NSString).appendingPathComponent("config.yaml")
        for key in TrainConfig.keys where key.onResume == .mustMatch && key.format(saved) != key.format(config) {
            throw FormatError.key(path, key.name, "the checkpoint was made with \(key.name) = '\(key.format(saved))' but this run has '\(key.format(config))'; resume with the same setting or start a new output directory")
        }
    }
}
