// `dtrain train`'s flags: one per key of `TrainConfig.keys`, in option groups (the sections of --help). A flag's
// name, help, value name (its choices) and completions come from its key's table entry (`@Option(key:)`), and
// the flags given are copied into the configuration through the table (`ConfigFlags.given`, read by
// reflection so that no flag can be left out), where they are checked like YAML values. swift-argument-parser
// finds options only in stored properties, so this file is the one place besides the table that names a key:
// it says which group shows it. TrainFlagsTests checks that every key has exactly one flag.
import ArgumentParser
import DTTraining

/// The text given to one flag and the key it sets (parsed and checked by the key's table entry).
struct ConfigFlag: Sendable {
    let key: String
    let text: String
}

extension Option where Value == ConfigFlag? {
    /// The flag of configuration key `name`, described by its table entry. A number key takes the next argument
    /// whatever it looks like, so `--probe-layer -1` reaches the table (which refuses `--seed -5` by its range).
    init(key name: String) {
        let key = TrainConfig.key(named: name)
        self.init(name: .customLong(String(key.flag.dropFirst(2))), parsing: key.kind == .integer || key.kind == .number ? .unconditional : .next,
                  help: ArgumentHelp(key.helpLine, valueName: key.valueName), completion: key.choices.isEmpty ? nil : .list(key.choices),
                  transform: { ConfigFlag(key: name, text: $0) })
    }
}

/// A group of configuration flags, shown under its title in --help.
protocol ConfigFlagGroup: ParsableArguments {}

/// A flag or a group of flags: what `ConfigFlags.given` looks for.
protocol ConfigFlagSource { var given: [ConfigFlag] { get } }
extension Option: ConfigFlagSource where Value == ConfigFlag? { var given: [ConfigFlag] { wrappedValue.map { [$0] } ?? [] } }
extension OptionGroup: ConfigFlagSource where Value: ConfigFlagGroup { var given: [ConfigFlag] { ConfigFlags.given(in: wrappedValue) } }

enum ConfigFlags {
    /// The configuration flags given to a parsed command (or group), in declaration order.
    static func given(in parsed: Any) -> [ConfigFlag] {
        Mirror(reflecting: parsed).children.flatMap { ($0.value as? ConfigFlagSource)?.given ?? [] }
    }
}

struct ModelFlags: ConfigFlagGroup {
    @Option(key: "method") var method: ConfigFlag?
    @Option(key: "model") var model: ConfigFlag?
    @Option(key: "precision") var precision: ConfigFlag?
    @Option(key: "compute") var compute: ConfigFlag?
    @Option(key: "quant") var quant: ConfigFlag?
    @Option(key: "placement") var placement: ConfigFlag?
}

struct DataFlags: ConfigFlagGroup {
    @Option(key: "data") var data: ConfigFlag?
    @Option(key: "valid_data") var validData: ConfigFlag?
    @Option(key: "valid_split") var validSplit: ConfigFlag?
    @Option(key: "max_length") var maxLength: ConfigFlag?
    @Option(key: "train_on_prompt") var trainOnPrompt: ConfigFlag?
    @Option(key: "packing") var packing: ConfigFlag?
    @Option(key: "chat_template") var chatTemplate: ConfigFlag?
}

struct OptimizerFlags: ConfigFlagGroup {
    @Option(key: "batch_size") var batchSize: ConfigFlag?
    @Option(key: "micro_batch_size") var microBatchSize: ConfigFlag?
    @Option(key: "epochs") var epochs: ConfigFlag?
    @Option(key: "max_steps") var maxSteps: ConfigFlag?
    @Option(key: "learning_rate") var learningRate: ConfigFlag?
    @Option(key: "schedule") var schedule: ConfigFlag?
    @Option(key: "warmup_steps") var warmupSteps: ConfigFlag?
    @Option(key: "weight_decay") var weightDecay: ConfigFlag?
    @Option(key: "max_grad_norm") var maxGradNorm: ConfigFlag?
    @Option(key: "seed") var seed: ConfigFlag?
    @Option(key: "nan_policy") var nanPolicy: ConfigFlag?
}

struct LoRAFlags: ConfigFlagGroup {
    @Option(key: "lora_rank") var loraRank: ConfigFlag?
    @Option(key: "lora_alpha") var loraAlpha: ConfigFlag?
    @Option(key: "lora_dropout") var loraDropout: ConfigFlag?
    @Option(key: "lora_targets") var loraTargets: ConfigFlag?
    @Option(key: "use_rslora") var useRslora: ConfigFlag?
    @Option(key: "use_dora") var useDora: ConfigFlag?
    @Option(key: "init_adapter") var initAdapter: ConfigFlag?
}

struct PromptTuningFlags: ConfigFlagGroup {
    @Option(key: "num_virtual_tokens") var numVirtualTokens: ConfigFlag?
    @Option(key: "prompt_init") var promptInit: ConfigFlag?
    @Option(key: "prompt_init_text") var promptInitText: ConfigFlag?
}

struct ProbeFlags: ConfigFlagGroup {
    @Option(key: "probe_layer") var probeLayer: ConfigFlag?
    @Option(key: "probe_pooling") var probePooling: ConfigFlag?
    @Option(key: "probe_bias") var probeBias: ConfigFlag?
    @Option(key: "probe_epochs") var probeEpochs: ConfigFlag?
    @Option(key: "probe_batch_size") var probeBatchSize: ConfigFlag?
    @Option(key: "probe_learning_rate") var probeLearningRate: ConfigFlag?
    @Option(key: "class_weights") var classWeights: ConfigFlag?
    @Option(key: "early_stopping_patience") var earlyStoppingPatience: ConfigFlag?
}

struct RunFlags: ConfigFlagGroup {
    @Option(key: "output") var output: ConfigFlag?
    @Option(key: "resume") var resume: ConfigFlag?
    @Option(key: "overwrite") var overwrite: ConfigFlag?
    @Option(key: "log_every") var logEvery: ConfigFlag?
    @Option(key: "eval_every") var evalEvery: ConfigFlag?
    @Option(key: "save_every") var saveEvery: ConfigFlag?
    @Option(key: "keep_checkpoints") var keepCheckpoints: ConfigFlag?
    @Option(key: "tensorboard") var tensorboard: ConfigFlag?
    @Option(key: "recompute") var recompute: ConfigFlag?
    @Option(key: "threads") var threads: ConfigFlag?
    @Option(key: "watchdog_factor") var watchdogFactor: ConfigFlag?
    @Option(key: "watchdog_min_seconds") var watchdogMinSeconds: ConfigFlag?
}
