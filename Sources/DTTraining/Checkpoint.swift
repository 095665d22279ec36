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

    /// Loads the AdamW moments into the arena (sizes must match).
    public static func loadMoments(_ dir: String, into arena: ParameterArena) throws {
        let path = (dir as NSString).appendingPathComponent("optimizer.safetensors")
        let file = try SafetensorsFile(path: path)
        for (name, target) in [("exp_avg", arena.firstMoment), ("exp_avg_sq", arena.secondMoment)] {
            let values = try file.floats(name)
            guard values.count == arena.count else {
                throw FormatError.key(path, name, "expected \(arena.count) values, found \(values.count) (a different adapter?)")
            }
            target.pointer.update(from: values, count: values.count)
        }
    }

    /// Checks that a checkpoint's config agrees with the current one on every key that changes the math.
    public static func checkCompatible(_ dir: String, with config: TrainConfig) throws {
        let path = (dir as NSString).appendingPathComponent("config.yaml")
        guard let text = try? String(contentsOfFile: path, encoding: .utf8) else {
            throw FormatError(file: path, location: "", "missing: not a complete checkpoint")
        }
        var saved = TrainConfig()
        try saved.apply(yaml: text, source: path)
        for key in TrainConfig.resumeInvariants where saved.value(key) != config.value(key) {
            throw FormatError.key(path, key, "the checkpoint was made with \(key) = '\(saved.value(key))' but this run has '\(config.value(key))'; resume with the same setting or start a new output directory")
        }
    }
}
