// The resolved training configuration: typed stored properties (their initial values are the defaults) and
// `TrainConfig.keys`, the one table of configuration keys. Every key can come from YAML (`--config run.yaml`,
// ConfigYAML.swift) or the flag of the same name (`learning_rate` ↔ `--learning-rate`, DTCommands/TrainFlags);
// flags win over the file, the file over the defaults. --help, the resolved config.yaml and the resume check are
// read from the table too. Adding a key: a stored property here, its entry in `keys`, its flag in TrainFlags.
import DTFormats
import DTKernels
import DTModel
import DTTokenizer

public struct TrainConfig: Equatable, Sendable {
    public var method = TrainMethod.lora
    public var model = ""
    public var precision = WeightPrecision.fp32
    public var compute = ComputeRequest.auto
    public var quant = WeightPrecision.nf4
    public var placement = PlacementRequest.auto
    public var data = ""
    public var validData = ""
    public var validSplit = 0.0
    public var output = "runs/run"
    public var maxLength = 512
    public var trainOnPrompt = false
    public var packing = false
    public var chatTemplate: ChatTemplateFamily? = nil
    public var batchSize = 8
    public var microBatchSize = 4
    public var epochs = 1.0
    public var maxSteps = 0
    public var learningRate = 2e-4
    public var schedule = LRSchedule.cosine
    public var warmupSteps = 0
    public var weightDecay = 0.0
    public var maxGradNorm = 1.0
    public var seed = 42
    public var loraRank = 8
    public var loraAlpha = 16.0
    public var loraDropout = 0.0
    public var loraTargets = TensorNames.Projection.allCases
    public var useRSLoRA = false
    public var useDoRA = false
    public var initAdapter = ""
    public var recompute = RecomputeMode.auto
    public var logEvery = 1
    public var tensorboard = true
    public var evalEvery = 0
    public var saveEvery = 0
    public var keepCheckpoints = 2
    public var resume = ResumeFrom.never
    public var threads = 0
    public var numVirtualTokens = 20
    public var promptInit = PromptInit.random
    public var promptInitText = ""
    public var probeLayer = -1
    public var probePooling = ProbeOptions.Pooling.last
    public var probeBias = true
    public var probeEpochs = 200
    public var probeBatchSize = 0
    public var probeLearningRate = 1e-2
    public var classWeights = ClassWeights.none
    public var earlyStoppingPatience = 20
    public var nanPolicy = NaNPolicy.stop
    public var overwrite = false
    public var watchdogFactor = 20.0
    public var watchdogMinSeconds = 60.0

    public init() {}

    /// Every key, in the order the resolved configuration is printed and saved.
    public static let keys: [ConfigKey] = {
        let size = 1...(1 << 24), count = 0...Int.max
        return [
            .choice(\.method, "method", .mustMatch, help: "what is trained: LoRA, QLoRA (LoRA over a quantized base), prompt tuning or a linear probe"),
            .string(\.model, "model", .mustMatch, valueName: "path", help: "GGUF file or HF directory (empty: the default model)"),
            .choice(\.precision, "precision", .mustMatch,
                    help: "frozen weights in memory: fp32, as stored (GGUF blocks, dequantized per layer) or NF4 + double quantization at load"),
            .choice(\.compute, "compute", help: "frozen-weight products: auto (bf16 where the CPU has AVX512_BF16 or AMX, else fp32), bf16 or fp32"),
            .choice(\.quant, "quant", .mustMatch, only: [.nf4, .asStored], help: "qlora: the frozen base's precision"),
            .choice(\.placement, "placement", help: "frozen base across ranks (auto: sharded for a quantized base on > 1 rank)"),
            .string(\.data, "data", .mustMatch, valueName: "path", help: "training data: .jsonl or .txt"),
            .string(\.validData, "valid_data", valueName: "path", help: "validation file"),
            .double(\.validSplit, "valid_split", .fraction, help: "fraction of the training data held out when valid_data is empty"),
            .string(\.output, "output", valueName: "path", help: "run directory (config, metrics, checkpoints, final adapter)"),
            .int(\.maxLength, "max_length", 2...(1 << 24), .mustMatch, help: "tokens per example at most"),
            .bool(\.trainOnPrompt, "train_on_prompt", .mustMatch, help: "also put the loss on prompt/user tokens"),
            .bool(\.packing, "packing", help: "lora/qlora: pack several examples per row (attention kept within each, no padding)"),
            .choice(\.chatTemplate, "chat_template", help: "chat template family to use instead of the model's (empty: the model's)"),
            .int(\.batchSize, "batch_size", size, .mustMatch, help: "examples per optimizer step, all ranks together"),
            .int(\.microBatchSize, "micro_batch_size", 1...(1 << 16), help: "examples per forward/backward on one rank"),
            .double(\.epochs, "epochs", .init(description: "in (0, 1e6]") { $0 > 0 && $0 <= 1e6 }, .mustMatch, help: "passes over the training data"),
            .int(\.maxSteps, "max_steps", 0...(1 << 40), .mustMatch, help: "optimizer steps (0: from epochs)"),
            .double(\.learningRate, "learning_rate", .positive, .mustMatch, help: "peak learning rate"),
            .choice(\.schedule, "schedule", .mustMatch, help: "learning-rate schedule after the warmup"),
            .int(\.warmupSteps, "warmup_steps", count, .mustMatch, help: "linear warmup steps"),
            .double(\.weightDecay, "weight_decay", .nonNegative, .mustMatch, help: "AdamW decoupled weight decay"),
            .double(\.maxGradNorm, "max_grad_norm", .nonNegative, help: "clip the global gradient norm (0: off)"),
            .int(\.seed, "seed", count, .mustMatch, help: "seed for data order and initialisation"),
            .int(\.loraRank, "lora_rank", 1...65536, .mustMatch, help: "LoRA rank r"),
            .double(\.loraAlpha, "lora_alpha", .positive, .mustMatch, help: "LoRA alpha (scale alpha/r)"),
            .double(\.loraDropout, "lora_dropout", .fraction, .mustMatch, help: "dropout on the LoRA input"),
            .list(\.loraTargets, "lora_targets", .mustMatch, help: "projections LoRA is applied to"),
            .bool(\.useRSLoRA, "use_rslora", .mustMatch, help: "scale alpha/sqrt(r)"),
            .bool(\.useDoRA, "use_dora", .mustMatch,
                  help: "lora/qlora: DoRA (PEFT use_dora), a trained magnitude per output feature of each adapted projection"),
            .string(\.initAdapter, "init_adapter", .mustMatch, valueName: "path",
                    help: "lora/qlora: start from this adapter (PEFT directory or llama.cpp GGUF); its rank, alpha and targets are used"),
            .choice(\.recompute, "recompute",
                    help: "recompute each layer's activations in backward (less memory, one more forward): auto (on when keeping every layer's would not fit in the memory available), true or false"),
            .int(\.logEvery, "log_every", size, help: "steps between progress lines"),
            .bool(\.tensorboard, "tensorboard", help: "also write TensorBoard event files into the run directory"),
            .int(\.evalEvery, "eval_every", count, help: "steps between validation losses (0: end only)"),
            .int(\.saveEvery, "save_every", count, help: "steps between checkpoints (0: end only)"),
            .int(\.keepCheckpoints, "keep_checkpoints", size, help: "checkpoints kept"),
            .string(\.resume, "resume", valueName: "never|auto|checkpoint",
                    help: "never, auto (newest complete checkpoint in output if any) or a checkpoint directory"),
            .int(\.threads, "threads", 0...4096, help: "BLAS threads per rank (0: automatic)"),
            .int(\.numVirtualTokens, "num_virtual_tokens", 1...(1 << 16), .mustMatch, help: "prompt tuning: virtual tokens"),
            .choice(\.promptInit, "prompt_init", help: "prompt tuning: initialisation from a text, sampled vocabulary rows or random"),
            .string(\.promptInitText, "prompt_init_text", valueName: "text", help: "prompt tuning: text for TEXT initialisation"),
            .int(\.probeLayer, "probe_layer", -1...(1 << 16), help: "probe: features after this many layers (-1: final norm output)"),
            .choice(\.probePooling, "probe_pooling", help: "probe: last non-pad token or mean over tokens"),
            .bool(\.probeBias, "probe_bias", help: "probe: train score.bias"),
            .int(\.probeEpochs, "probe_epochs", 1...(1 << 24), help: "probe: passes over the cached features"),
            .int(\.probeBatchSize, "probe_batch_size", count, help: "probe: rows per update (0: full batch)"),
            .double(\.probeLearningRate, "probe_learning_rate", .positive, help: "probe: AdamW learning rate"),
            .choice(\.classWeights, "class_weights", help: "probe: class weights in the loss"),
            .int(\.earlyStoppingPatience, "early_stopping_patience", count, help: "probe: epochs without validation improvement (0: off)"),
            .choice(\.nanPolicy, "nan_policy", help: "a non-finite loss or gradient norm: stop (the run, before anything is written) or skip (the step)"),
            .bool(\.overwrite, "overwrite", help: "replace the checkpoints and final/ of another run in output (else such a directory is refused)"),
            .double(\.watchdogFactor, "watchdog_factor", .nonNegative,
                    help: "> 1 rank: abort the job, naming the stalled rank, when no step completes within this many median step times (0: off)"),
            .double(\.watchdogMinSeconds, "watchdog_min_seconds", .positive, help: "the watchdog's limit is never below this many seconds"),
        ]
    }()

    public var probeOptions: ProbeOptions {
        var o = ProbeOptions()
        o.layer = probeLayer >= 0 ? probeLayer : nil
        o.pooling = probePooling
        o.bias = probeBias; o.epochs = probeEpochs; o.batchSize = probeBatchSize; o.learningRate = probeLearningRate
        o.weightDecay = weightDecay; o.balancedClassWeights = classWeights == .balanced; o.patience = earlyStoppingPatience
        o.seed = UInt64(seed)
        return o
    }

    /// The frozen base's precision: `quant` for QLoRA, else `precision`.
    public var weightPrecision: WeightPrecision { method == .qlora ? quant : precision }

    /// The products' precision on this CPU (`compute: bf16` where it has no bf16 instructions is an error).
    public func computePrecision() throws -> ComputePrecision { try ComputePrecision.resolve(compute) }

    /// Where the frozen base lives on `ranks` ranks.
    public func basePlacement(ranks: Int) -> Placement {
        switch placement {
        case .sharded: return ranks > 1 ? .sharded : .replicated
        case .replicated: return .replicated
        case .auto: return ranks > 1 && weightPrecision != .fp32 ? .sharded : .replicated
        }
    }

    public var loraOptions: LoRAOptions {
        var o = LoRAOptions()
        o.rank = loraRank; o.alpha = Float(loraAlpha); o.dropout = Float(loraDropout); o.rsLoRA = useRSLoRA; o.useDoRA = useDoRA
        o.targets = TensorNames.Projection.allCases.filter(loraTargets.contains)
        return o
    }

    /// Takes rank, alpha, rsLoRA and targets from an adapter the run starts from (`init_adapter`); a DoRA adapter
    /// makes the run DoRA (a LoRA one may start a DoRA run: its magnitudes start at ‖W + s·B·A‖).
    public mutating func adopt(_ o: LoRAOptions) {
        loraRank = o.rank; loraAlpha = Double(o.alpha); useRSLoRA = o.rsLoRA; loraTargets = o.targets
        useDoRA = useDoRA || o.useDoRA
    }
}

/// What `dtrain train` trains (design.md: the four trainable kinds).
public enum TrainMethod: String, ConfigChoice {
    case lora, qlora, prompt, probe
    /// LoRA over a full-precision or a quantized base.
    public var isLoRA: Bool { self == .lora || self == .qlora }
}

/// `placement`: the frozen base's placement across ranks, or `auto` (decided by `basePlacement(ranks:)`).
public enum PlacementRequest: String, ConfigChoice { case auto, sharded, replicated }

/// `recompute`: keep every layer's activations for backward (false), keep only each layer's input and run the
/// layer's forward again in backward (true), or choose at start from the memory estimate (auto; DTRuns resolves it).
public enum RecomputeMode: String, ConfigChoice {
    case auto, on = "true", off = "false"
}

extension TrainConfig {
    /// Whether the backward recomputes each layer (an unresolved `auto` keeps them all, as `false`).
    public var recomputes: Bool { recompute == .on }
}

/// `class_weights` of the probe's loss.
public enum ClassWeights: String, ConfigChoice { case none, balanced }

/// `nan_policy`: what a step with a non-finite loss or gradient norm does.
public enum NaNPolicy: String, ConfigChoice { case stop, skip }

/// `resume`: start fresh, continue from the newest complete checkpoint in the output (if any), or from a path.
public enum ResumeFrom: Equatable, Sendable, LosslessStringConvertible {
    case never, auto, checkpoint(String)
    public init(_ text: String) { self = text == "never" ? .never : text == "auto" ? .auto : .checkpoint(text) }
    public var description: String {
        switch self { case .never: "never"; case .auto: "auto"; case .checkpoint(let path): path }
    }
}

extension WeightPrecision: ConfigChoice {}
extension ComputeRequest: ConfigChoice {}
extension LRSchedule: ConfigChoice {}
extension PromptInit: ConfigChoice {}
extension ProbeOptions.Pooling: ConfigChoice {}
extension ChatTemplateFamily: ConfigChoice {}
extension TensorNames.Projection: ConfigChoice {}
