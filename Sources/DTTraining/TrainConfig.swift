// The resolved training configuration. Every key can come from YAML (`--config run.yaml`) or a flag of the
// same name (`learning_rate` ↔ `--learning-rate`); flags win over the file, the file over the defaults.
// Unknown keys, ill-typed values (a float or bool for an integer, a quoted string for a number), numbers that are
// not finite or out of range, and duplicate YAML keys are errors naming the file (or flag), the line and the key.
import DTFormats
import DTKernels
import DTModel
import Foundation
import Yams

public struct TrainConfig: Equatable, Sendable {
    public var method = "lora"
    public var model = ""
    public var precision = "fp32"
    public var compute = "auto"
    public var quant = "nf4"
    public var placement = "auto"
    public var data = ""
    public var validData = ""
    public var validSplit = 0.0
    public var output = "runs/run"
    public var maxLength = 512
    public var trainOnPrompt = false
    public var packing = false
    public var chatTemplate = ""
    public var batchSize = 8
    public var microBatchSize = 4
    public var epochs = 1.0
    public var maxSteps = 0
    public var learningRate = 2e-4
    public var schedule = "cosine"
    public var warmupSteps = 0
    public var weightDecay = 0.0
    public var maxGradNorm = 1.0
    public var seed = 42
    public var loraRank = 8
    public var loraAlpha = 16.0
    public var loraDropout = 0.0
    public var loraTargets = TensorNames.Projection.allCases.map(\.rawValue)
    public var useRSLoRA = false
    public var useDoRA = false
    public var initAdapter = ""
    public var recompute = false
    public var logEvery = 1
    public var tensorboard = true
    public var evalEvery = 0
    public var saveEvery = 0
    public var keepCheckpoints = 2
    public var resume = "never"
    public var threads = 0
    public var numVirtualTokens = 20
    public var promptInit = "RANDOM"
    public var promptInitText = ""
    public var probeLayer = -1
    public var probePooling = "last"
    public var probeBias = true
    public var probeEpochs = 200
    public var probeBatchSize = 0
    public var probeLearningRate = 1e-2
    public var classWeights = "none"
    public var earlyStoppingPatience = 20
    public var nanPolicy = "stop"
    public var overwrite = false
    public var watchdogFactor = 20.0
    public var watchdogMinSeconds = 60.0

    public init() {}

    /// (key, help) for every key, in the order the resolved config is printed.
    public static let keys: [(String, String)] = [
        ("method", "lora, qlora or prompt"), ("model", "GGUF file or HF directory (empty: the default model)"),
        ("precision", "fp32, as-stored (GGUF blocks) or nf4 (NF4 + double quantization at load)"),
        ("compute", "frozen-weight products: auto (bf16 where the CPU has AVX512_BF16 or AMX, else fp32), bf16 or fp32"),
        ("quant", "qlora: nf4 or as-stored (the frozen base's precision)"),
        ("placement", "frozen base across ranks: auto (sharded for a quantized base on > 1 rank), sharded or replicated"), ("data", "training data: .jsonl or .txt"), ("valid_data", "validation file"),
        ("valid_split", "fraction of the training data held out when valid_data is empty"), ("output", "run directory"),
        ("max_length", "tokens per example at most"), ("train_on_prompt", "also put the loss on prompt/user tokens"),
        ("packing", "lora/qlora: pack several examples per row (attention kept within each, no padding)"),
        ("chat_template", "chat template family to use instead of the model's"), ("batch_size", "examples per optimizer step, all ranks together"),
        ("micro_batch_size", "examples per forward/backward on one rank"), ("epochs", "passes over the training data"),
        ("max_steps", "optimizer steps (0: from epochs)"), ("learning_rate", "peak learning rate"),
        ("schedule", "constant, linear or cosine (after warmup)"), ("warmup_steps", "linear warmup steps"),
        ("weight_decay", "AdamW decoupled weight decay"), ("max_grad_norm", "clip the global gradient norm (0: off)"),
        ("seed", "seed for data order and initialisation"), ("lora_rank", "LoRA rank r"), ("lora_alpha", "LoRA alpha (scale alpha/r)"),
        ("lora_dropout", "dropout on the LoRA input"), ("lora_targets", "projections: q_proj k_proj v_proj o_proj gate_proj up_proj down_proj"),
        ("use_rslora", "scale alpha/sqrt(r)"),
        ("use_dora", "lora/qlora: DoRA (PEFT use_dora), a trained magnitude per output feature of each adapted projection"),
        ("init_adapter", "lora/qlora: start from this adapter (PEFT directory or llama.cpp GGUF); its rank, alpha and targets are used"), ("recompute", "recompute activations in backward (less memory)"),
        ("log_every", "steps between progress lines"), ("tensorboard", "also write TensorBoard event files into the run directory"), ("eval_every", "steps between validation losses (0: end only)"),
        ("save_every", "steps between checkpoints (0: end only)"), ("keep_checkpoints", "checkpoints kept"),
        ("resume", "never, auto (newest complete checkpoint if any) or a checkpoint path"), ("threads", "BLAS threads per rank (0: automatic)"),
        ("num_virtual_tokens", "prompt tuning: virtual tokens V"), ("prompt_init", "prompt tuning: TEXT, SAMPLE_VOCAB or RANDOM"),
        ("prompt_init_text", "prompt tuning: text for TEXT initialisation"),
        ("probe_layer", "probe: features after this many layers (-1: final norm output)"), ("probe_pooling", "probe: last or mean"),
        ("probe_bias", "probe: train score.bias"), ("probe_epochs", "probe: passes over the cached features"),
        ("probe_batch_size", "probe: rows per update (0: full batch)"), ("probe_learning_rate", "probe: AdamW learning rate"),
        ("class_weights", "probe: none or balanced"), ("early_stopping_patience", "probe: epochs without validation improvement (0: off)"),
        ("nan_policy", "a non-finite loss or gradient norm: stop (the run, before anything is written) or skip (the step)"),
        ("overwrite", "replace the checkpoints and final/ of another run in output (else such a directory is refused)"),
        ("watchdog_factor", "> 1 rank: abort the job, naming the stalled rank, when no step completes within this many median step times (0: off)"),
        ("watchdog_min_seconds", "the watchdog's limit is never below this many seconds"),
    ]

    /// The YAML type of each key that is not free text.
    enum Kind { case integer, number, flag, list, text }
    static let integerKeys: Set = ["max_length", "batch_size", "micro_batch_size", "max_steps", "warmup_steps", "seed", "lora_rank",
                                   "log_every", "eval_every", "save_every", "keep_checkpoints", "threads", "num_virtual_tokens",
                                   "probe_layer", "probe_epochs", "probe_batch_size", "early_stopping_patience"]
    static let numberKeys: Set = ["valid_split", "epochs", "learning_rate", "weight_decay", "max_grad_norm", "lora_alpha",
                                  "lora_dropout", "probe_learning_rate", "watchdog_factor", "watchdog_min_seconds"]
    static let flagKeys: Set = ["train_on_prompt", "packing", "use_rslora", "use_dora", "recompute", "tensorboard", "probe_bias", "overwrite"]
    static func kind(_ key: String) -> Kind {
        integerKeys.contains(key) ? .integer : numberKeys.contains(key) ? .number : flagKeys.contains(key) ? .flag
            : key == "lora_targets" ? .list : .text
    }

    /// Sets `key` from its text form; `source` names the file or flag for errors.
    public mutating func set(_ key: String, _ value: String, source: String) throws {
        func bad(_ expected: String) -> FormatError { FormatError.key(source, key, "expected \(expected), found '\(value)'") }
        func int(_ range: ClosedRange<Int>) throws -> Int {
            let expected = range.upperBound == Int.max ? "an integer ≥ \(range.lowerBound)" : "an integer in [\(range.lowerBound), \(range.upperBound)]"
            guard let v = Int(value) else { throw bad(expected) }
            guard range.contains(v) else { throw bad(expected) }
            return v
        }
        /// A finite number satisfying `valid` (described by `expected`): NaN and ±inf never enter.
        func double(_ expected: String, _ valid: (Double) -> Bool) throws -> Double {
            guard let v = Double(value), v.isFinite, valid(v) else { throw bad("a finite number \(expected)") }
            return v
        }
        func bool() throws -> Bool {
            switch value.lowercased() { case "true", "yes", "1": return true; case "false", "no", "0": return false; default: throw bad("true or false") }
        }
        func oneOf(_ allowed: [String]) throws -> String { guard allowed.contains(value) else { throw bad(allowed.joined(separator: " | ")) }; return value }
        let size = 1...(1 << 24), count = 0...Int.max
        switch key {
        case "method": method = try oneOf(["lora", "qlora", "prompt", "probe"])
        case "model": model = value
        case "precision": precision = try oneOf(WeightPrecision.allCases.map(\.rawValue))
        case "compute": compute = try oneOf(ComputeRequest.allCases.map(\.rawValue))
        case "quant": quant = try oneOf(["nf4", "as-stored"])
        case "placement": placement = try oneOf(["auto", "sharded", "replicated"])
        case "data": data = value
        case "valid_data": validData = value
        case "valid_split": validSplit = try double("in [0, 1)") { $0 >= 0 && $0 < 1 }
        case "output": output = value
        case "max_length": maxLength = try int(2...(1 << 24))
        case "train_on_prompt": trainOnPrompt = try bool()
        case "packing": packing = try bool()
        case "chat_template": chatTemplate = value
        case "batch_size": batchSize = try int(size)
        case "micro_batch_size": microBatchSize = try int(1...(1 << 16))
        case "epochs": epochs = try double("in (0, 1e6]") { $0 > 0 && $0 <= 1e6 }
        case "max_steps": maxSteps = try int(0...(1 << 40))
        case "learning_rate": learningRate = try double("> 0") { $0 > 0 }
        case "schedule": schedule = try oneOf(LRSchedule.allCases.map(\.rawValue))
        case "warmup_steps": warmupSteps = try int(count)
        case "weight_decay": weightDecay = try double("≥ 0") { $0 >= 0 }
        case "max_grad_norm": maxGradNorm = try double("≥ 0 (0: off)") { $0 >= 0 }
        case "seed": seed = try int(count)
        case "lora_rank": loraRank = try int(1...65536)
        case "lora_alpha": loraAlpha = try double("> 0") { $0 > 0 }
        case "lora_dropout": loraDropout = try double("in [0, 1)") { $0 >= 0 && $0 < 1 }
        case "lora_targets":
            let names = value.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
            let known = TensorNames.Projection.allCases.map(\.rawValue)
            guard !names.isEmpty, names.allSatisfy(known.contains) else { throw bad("a list of \(known.joined(separator: ", "))") }
            loraTargets = names
        case "use_rslora": useRSLoRA = try bool()
        case "use_dora": useDoRA = try bool()
        case "init_adapter": initAdapter = value
        case "recompute": recompute = try bool()
        case "log_every": logEvery = try int(size)
        case "tensorboard": tensorboard = try bool()
        case "eval_every": evalEvery = try int(count)
        case "save_every": saveEvery = try int(count)
        case "keep_checkpoints": keepCheckpoints = try int(size)
        case "resume": resume = value
        case "threads": threads = try int(0...4096)
        case "num_virtual_tokens": numVirtualTokens = try int(1...(1 << 16))
        case "prompt_init": promptInit = try oneOf(PromptInit.allCases.map(\.rawValue))
        case "prompt_init_text": promptInitText = value
        case "probe_layer": probeLayer = try int(-1...(1 << 16))
        case "probe_pooling": probePooling = try oneOf(["last", "mean"])
        case "probe_bias": probeBias = try bool()
        case "probe_epochs": probeEpochs = try int(1...(1 << 24))
        case "probe_batch_size": probeBatchSize = try int(count)
        case "probe_learning_rate": probeLearningRate = try double("> 0") { $0 > 0 }
        case "class_weights": classWeights = try oneOf(["none", "balanced"])
        case "early_stopping_patience": earlyStoppingPatience = try int(count)
        case "nan_policy": nanPolicy = try oneOf(["stop", "skip"])
        case "overwrite": overwrite = try bool()
        case "watchdog_factor": watchdogFactor = try double("≥ 0 (0: off)") { $0 >= 0 }
        case "watchdog_min_seconds": watchdogMinSeconds = try double("> 0") { $0 > 0 }
        default:
            throw FormatError.key(source, key, "unknown configuration key (known: \(Self.keys.map(\.0).joined(separator: ", ")))")
        }
    }

    public func value(_ key: String) -> String {
        switch key {
        case "method": method; case "model": model; case "precision": precision; case "compute": compute; case "quant": quant; case "placement": placement; case "data": data
        case "valid_data": validData; case "valid_split": "\(validSplit)"; case "output": output
        case "max_length": "\(maxLength)"; case "train_on_prompt": "\(trainOnPrompt)"; case "packing": "\(packing)"; case "chat_template": chatTemplate
        case "batch_size": "\(batchSize)"; case "micro_batch_size": "\(microBatchSize)"; case "epochs": "\(epochs)"
        case "max_steps": "\(maxSteps)"; case "learning_rate": "\(learningRate)"; case "schedule": schedule
        case "warmup_steps": "\(warmupSteps)"; case "weight_decay": "\(weightDecay)"; case "max_grad_norm": "\(maxGradNorm)"
        case "seed": "\(seed)"; case "lora_rank": "\(loraRank)"; case "lora_alpha": "\(loraAlpha)"; case "lora_dropout": "\(loraDropout)"
        case "lora_targets": loraTargets.joined(separator: " "); case "use_rslora": "\(useRSLoRA)"; case "use_dora": "\(useDoRA)"; case "init_adapter": initAdapter; case "recompute": "\(recompute)"
        case "log_every": "\(logEvery)"; case "tensorboard": "\(tensorboard)"; case "eval_every": "\(evalEvery)"; case "save_every": "\(saveEvery)"
        case "keep_checkpoints": "\(keepCheckpoints)"; case "resume": resume; case "threads": "\(threads)"
        case "num_virtual_tokens": "\(numVirtualTokens)"; case "prompt_init": promptInit; case "prompt_init_text": promptInitText
        case "probe_layer": "\(probeLayer)"; case "probe_pooling": probePooling; case "probe_bias": "\(probeBias)"
        case "probe_epochs": "\(probeEpochs)"; case "probe_batch_size": "\(probeBatchSize)"; case "probe_learning_rate": "\(probeLearningRate)"
        case "class_weights": classWeights; case "early_stopping_patience": "\(earlyStoppingPatience)"
        case "nan_policy": nanPolicy; case "overwrite": "\(overwrite)"
        case "watchdog_factor": "\(watchdogFactor)"; case "watchdog_min_seconds": "\(watchdogMinSeconds)"
        default: ""
        }
    }

    /// Applies a YAML file: a mapping of known keys to scalars of their type (a list for lora_targets). The
    /// document is composed, not constructed, so a key given twice is seen (and refused, naming both lines) and
    /// aliases are never expanded.
    public mutating func apply(yaml text: String, source: String) throws {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw FormatError(file: source, location: "", "malformed YAML: \(error)")
        }
        guard let root else { return }
        guard let mapping = root.mapping else {
            throw FormatError(file: source, location: "line \(root.mark?.line ?? 1)", "expected a mapping of configuration keys")
        }
        var seen: [String: Int] = [:]
        for (keyNode, valueNode) in mapping {
            let line = keyNode.mark?.line ?? 0
            guard let key = keyNode.scalar?.string else {
                throw FormatError(file: source, location: "line \(line)", "expected a configuration key, found a \(keyNode.mapping != nil ? "mapping" : "list")")
            }
            let location = "line \(line), key '\(key)'"
            guard Self.keys.contains(where: { $0.0 == key }) else {
                throw FormatError(file: source, location: location, "unknown configuration key (known: \(Self.keys.map(\.0).joined(separator: ", ")))")
            }
            if let first = seen[key] { throw FormatError(file: source, location: location, "duplicate key (first given at line \(first))") }
            seen[key] = line
            let text = try Self.text(of: valueNode, kind: Self.kind(key), file: source, location: location)
            do { try set(key, text, source: source) } catch var error as FormatError {
                error.location = "line \(line), " + error.location
                throw error
            }
        }
    }

    /// The text form of a YAML value for a key of `kind`, refusing values of another type.
    static func text(of node: Node, kind: Kind, file: String, location: String) throws -> String {
        func refuse(_ expected: String, _ found: String) -> FormatError {
            FormatError(file: file, location: location, "expected \(expected), found \(found)")
        }
        func describe(_ n: Node) -> String {
            guard let s = n.scalar else { return n.mapping != nil ? "a mapping" : "a list" }
            switch n.tag.description {
            case Tag.Name.str.rawValue: return s.style == .plain || s.style == .any ? "'\(s.string)'" : "\"\(s.string)\" (a quoted string)"
            case Tag.Name.null.rawValue: return "no value"
            default: return s.string
            }
        }
        let tag = node.tag.description
        switch kind {
        case .list:
            if let list = node.sequence {
                return try list.map { item in
                    guard item.scalar != nil, item.tag.description == Tag.Name.str.rawValue else { throw refuse("a list of names", describe(item)) }
                    return item.scalar!.string
                }.joined(separator: " ")
            }
            guard let s = node.scalar, tag == Tag.Name.str.rawValue else { throw refuse("a list of names", describe(node)) }
            return s.string
        case .integer:
            guard tag == Tag.Name.int.rawValue, let v = node.int else { throw refuse("an integer", describe(node)) }
            return "\(v)"
        case .number:
            guard tag == Tag.Name.int.rawValue || tag == Tag.Name.float.rawValue, let v = node.float else { throw refuse("a number", describe(node)) }
            return "\(v)"
        case .flag:
            guard tag == Tag.Name.bool.rawValue, let v = node.bool else { throw refuse("true or false", describe(node)) }
            return "\(v)"
        case .text:
            guard let s = node.scalar, tag != Tag.Name.null.rawValue else { throw refuse("a value", describe(node)) }
            return s.string
        }
    }

    /// The resolved configuration as YAML (every key, defaults filled in; text quoted so it reads back as text).
    public var yaml: String {
        Self.keys.map { key, _ in
            switch Self.kind(key) {
            case .list: return "\(key): [\(loraTargets.joined(separator: ", "))]"
            case .integer, .number, .flag: return "\(key): \(value(key))"
            case .text: return "\(key): \(SafetensorsWriter.jsonString(value(key)))"
            }
        }.joined(separator: "\n") + "\n"
    }

    public var probeOptions: ProbeOptions {
        var o = ProbeOptions()
        o.layer = probeLayer >= 0 ? probeLayer : nil
        o.pooling = ProbeOptions.Pooling(rawValue: probePooling)!
        o.bias = probeBias; o.epochs = probeEpochs; o.batchSize = probeBatchSize; o.learningRate = probeLearningRate
        o.weightDecay = weightDecay; o.balancedClassWeights = classWeights == "balanced"; o.patience = earlyStoppingPatience
        o.seed = UInt64(seed)
        return o
    }

    /// The frozen base's precision: `quant` for QLoRA, else `precision`.
    public var weightPrecision: WeightPrecision {
        WeightPrecision(rawValue: method == "qlora" ? quant : precision)!
    }

    /// The products' precision on this CPU (`compute: bf16` where it has no bf16 instructions is an error).
    public func computePrecision() throws -> ComputePrecision {
        try ComputePrecision.resolve(ComputeRequest(rawValue: compute)!)
    }

    /// Where the frozen base lives on `ranks` ranks.
    public func basePlacement(ranks: Int) -> Placement {
        switch placement {
        case "sharded": return ranks > 1 ? .sharded : .replicated
        case "replicated": return .replicated
        default: return ranks > 1 && weightPrecision != .fp32 ? .sharded : .replicated
        }
    }

    public var loraOptions: LoRAOptions {
        var o = LoRAOptions()
        o.rank = loraRank; o.alpha = Float(loraAlpha); o.dropout = Float(loraDropout); o.rsLoRA = useRSLoRA; o.useDoRA = useDoRA
        o.targets = TensorNames.Projection.allCases.filter { loraTargets.contains($0.rawValue) }
        return o
    }

    /// Takes rank, alpha, rsLoRA and targets from an adapter the run starts from (`init_adapter`); a DoRA adapter
    /// makes the run DoRA (a LoRA one may start a DoRA run: its magnitudes start at ‖W + s·B·A‖).
    public mutating func adopt(_ o: LoRAOptions) {
        loraRank = o.rank; loraAlpha = Double(o.alpha); useRSLoRA = o.rsLoRA; loraTargets = o.targets.map(\.rawValue)
        useDoRA = useDoRA || o.useDoRA
    }

    /// Keys that must agree between a checkpoint and the run resuming from it.
    public static let resumeInvariants = ["method", "model", "precision", "quant", "data", "max_length", "batch_size", "seed", "lora_rank",
                                         "lora_alpha", "lora_targets", "use_rslora", "use_dora", "init_adapter", "lora_dropout", "learning_rate", "schedule",
                                         "warmup_steps", "max_steps", "epochs", "weight_decay", "train_on_prompt", "num_virtual_tokens"]
}

