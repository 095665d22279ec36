// `dtrain train`: the YAML config and every key as a flag, resolved, printed by rank 0 and saved; progress
// lines; metrics.jsonl; checkpoints; the final adapter in runs/NAME/final/.
import ArgumentParser
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTRuns
import DTTokenizer
import DTTraining
import Foundation

/// Every key of a training run as a flag, with --config: what `dtrain train` and `dtrain plan` take.
public struct TrainKeys: ParsableArguments {
    @Option(help: "YAML file of configuration keys (flags of the same name override it).") var config: String?
    @OptionGroup(title: "Method and frozen model") var modelFlags: ModelFlags
    @OptionGroup(title: "Data") var dataFlags: DataFlags
    @OptionGroup(title: "Optimizer") var optimizerFlags: OptimizerFlags
    @OptionGroup(title: "LoRA and QLoRA") var loraFlags: LoRAFlags
    @OptionGroup(title: "Prompt tuning") var promptTuningFlags: PromptTuningFlags
    @OptionGroup(title: "Linear probe") var probeFlags: ProbeFlags
    @OptionGroup(title: "Run") var runFlags: RunFlags

    public init() {}

    /// The defaults, overridden by the YAML file, overridden by the flags; each value checked by its key's entry.
    public func resolvedConfig() throws -> TrainConfig {
        var resolved = TrainConfig()
        if let config { try resolved.apply(yaml: try TextFiles.readUTF8(config), source: config) }
        for flag in ConfigFlags.given(in: self) { try resolved.set(flag.key, flag.text, source: TrainConfig.key(named: flag.key).flag) }
        return resolved
    }
}

public struct Train: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Fine-tune an adapter (LoRA, QLoRA, prompt tuning) or train a linear probe, on one process or under mpirun.",
        discussion: "Every flag is also a key of the YAML file given with --config, with underscores (--learning-rate ↔ learning_rate); flags override the file, the file the defaults.")

    @OptionGroup var keys: TrainKeys

    public init() {}

    /// The defaults, overridden by the YAML file, overridden by the flags; each value checked by its key's entry.
    public func resolvedConfig() throws -> TrainConfig { try keys.resolvedConfig() }

    public func run() throws {
        let resolved: TrainConfig
        do {
            resolved = try resolvedConfig()
            guard !resolved.data.isEmpty else { throw ValidationError("no training data: set data in the config or pass --data") }
        } catch {
            Console.error("error: \(error)")
            throw ExitCode(1)
        }
        let runtime = Runtime(threads: resolved.threads > 0 ? resolved.threads : nil)
        runtime.run {
            if resolved.method == .probe { try ProbeRun.execute(resolved, runtime: runtime) } else { try TrainingRun.execute(resolved, runtime: runtime) }
        }
    }
}

