// The resolved training configuration. Every key can come from YAML (`--config run.yaml`) or a flag of the
// same name (`learning_rate` ↔ `--learning-rate`); flags win over the file, the file over the defaults.
// Unknown keys and ill-typed values are errors naming the file (or flag) and the key.
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
    ]

    /// Sets `key` from its text form; `source` names the file or flag for errors.
    public mutating func set(_ key: String, _ value: String, source: String) throws {
        func bad(_ expected: String) -> FormatError { FormatError.key(source, key, "expected \(expected), found '\(value)'") }
        func int() throws -> Int { guard let v = Int(value) else { throw bad("an integer") }; return v }
        func double() throws -> Double { guard let v = Double(value) else { throw bad("a number") }; return v }
        func bool() throws -> Bool {
            switch value.lowercased() { case "true", "yes", "1": return true; case "false", "no", "0": return false; default: throw bad("true or false") }
        }
        func oneOf(_ allowed: [String]) throws -> String { guard allowed.contains(value) else { throw bad(allowed.joined(separator: " | ")) }; return value }
        switch key {
        case "method": method = try oneOf(["lora", "qlora", "prompt", "probe"])
        case "model": model = value
        case "precision": precision = try oneOf(WeightPrecision.allCases.map(\.rawValue))
        case "compute": compute = try oneOf(ComputeRequest.allCases.map(\.rawValue))
        case "quant": quant = try oneOf(["nf4", "as-stored"])
        case "placement": placement = try oneOf(["auto", "sharded", "replicated"])
        case "data": data = value
        case "valid_data": validData = value
        case "valid_split": validSplit = try double(); guard (0..<1).contains(validSplit) else { throw bad("a fraction in [0, 1)") }
        case "output": output = value
        case "max_length": maxLength = try int(); guard maxLength >= 2 else { throw bad("at least 2") }
        case "train_on_prompt": trainOnPrompt = try bool()
        case "packing": packing = try bool()
        case "chat_template": chatTemplate = value
        case "batch_size": batchSize = try int(); guard batchSize >= 1 else { throw bad("at least 1") }
        case "micro_batch_size": microBatchSize = try int(); guard microBatchSize >= 1 else { throw bad("at least 1") }
        case "epochs": epochs = try double(); guard epochs > 0 else { throw bad("a positive number") }
        case "max_steps": maxSteps = try int(); guard maxSteps >= 0 else { throw bad("0 or more") }
        case "learning_rate": learningRate = try double()
        case "schedule": schedule = try oneOf(LRSchedule.allCases.map(\.rawValue))
        case "warmup_steps": warmupSteps = try int()
        case "weight_decay": weightDecay = try double()
        case "max_grad_norm": maxGradNorm = try double()
        case "seed": seed = try int()
        case "lora_rank": loraRank = try int(); guard loraRank >= 1 else { throw bad("at least 1") }
        case "lora_alpha": loraAlpha = try double()
        case "lora_dropout": loraDropout = try double(); guard (0..<1).contains(loraDropout) else { throw bad("a fraction in [0, 1)") }
        case "lora_targets":
            let names = value.split(whereSeparator: { $0 == "," || $0 == " " }).map(String.init)
            let known = TensorNames.Projection.allCases.map(\.rawValue)
            guard !names.isEmpty, names.allSatisfy(known.contains) else { throw bad("a list of \(known.joined(separator: ", "))") }
            loraTargets = names
        case "use_rslora": useRSLoRA = try bool()
        case "init_adapter": initAdapter = value
        case "recompute": recompute = try bool()
        case "log_every": logEvery = max(1, try int())
        case "tensorboard": tensorboard = try bool()
        case "eval_every": evalEvery = try int()
        case "save_every": saveEvery = try int()
        case "keep_checkpoints": keepCheckpoints = max(1, try int())
        case "resume": resume = value
        case "threads": threads = try int()
        case "num_virtual_tokens": numVirtualTokens = try int(); guard numVirtualTokens >= 1 else { throw bad("at least 1") }
        case "prompt_init": promptInit = try oneOf(PromptInit.allCases.map(\.rawValue))
        case "prompt_init_text": promptInitText = value
        case "probe_layer": probeLayer = try int()
        case "probe_pooling": probePooling = try oneOf(["last", "mean"])
        case "probe_bias": probeBias = try bool()
        case "probe_epochs": probeEpochs = try int(); guard probeEpochs >= 1 else { throw bad("at least 1") }
        case "probe_batch_size": probeBatchSize = try int()
        case "probe_learning_rate": probeLearningRate = try double()
        case "class_weights": classWeights = try oneOf(["none", "balanced"])
        case "early_stopping_patience": earlyStoppingPatience = try int()
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
        case "lora_targets": loraTargets.joined(separator: " "); case "use_rslora": "\(useRSLoRA)"; case "init_adapter": initAdapter; case "recompute": "\(recompute)"
        case "log_every": "\(logEvery)"; case "tensorboard": "\(tensorboard)"; case "eval_every": "\(evalEvery)"; case "save_every": "\(saveEvery)"
        case "keep_checkpoints": "\(keepCheckpoints)"; case "resume": resume; case "threads": "\(threads)"
        case "num_virtual_tokens": "\(numVirtualTokens)"; case "prompt_init": promptInit; case "prompt_init_text": promptInitText
        case "probe_layer": "\(probeLayer)"; case "probe_pooling": probePooling; case "probe_bias": "\(probeBias)"
        case "probe_epochs": "\(probeEpochs)"; case "probe_batch_size": "\(probeBatchSize)"; case "probe_learning_rate": "\(probeLearningRate)"
        case "class_weights": classWeights; case "early_stopping_patience": "\(earlyStoppingPatience)"
        default: ""
        }
    }

    /// Applies a YAML file: a mapping of known keys to scalars (lists allowed for lora_targets).
    public mutating func apply(yaml text: String, source: String) throws {
        let parsed: Any?
        do { parsed = try Yams.load(yaml: text) } catch {
            throw FormatError(file: source, location: "", "malformed YAML: \(error)")
        }
        guard let mapping = parsed as? [String: Any] else {
            if parsed == nil { return }
            throw FormatError(file: source, location: "", "expected a mapping of configuration keys")
        }
        for key in mapping.keys.sorted() {
            let v = mapping[key]!
            let text: String
            if let list = v as? [Any] { text = list.map { "\($0)" }.joined(separator: " ") }
            else if v is [String: Any] { throw FormatError.key(source, key, "expected a value, found a mapping") }
            else { text = "\(v)" }
            try set(key, text, source: source)
        }
    }

    /// The resolved configuration as YAML (every key, defaults filled in).
    public var yaml: String {
        Self.keys.map { key, _ in
            let v = value(key)
            if key == "lora_targets" { return "\(key): [\(loraTargets.joined(separator: ", "))]" }
            return "\(key): \(v.isEmpty ? "\"\"" : (Double(v) != nil || ["true", "false"].contains(v) ? v : "\"\(v)\""))"
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
        o.rank = loraRank; o.alpha = Float(loraAlpha); o.dropout = Float(loraDropout); o.rsLoRA = useRSLoRA
        o.targets = TensorNames.Projection.allCases.filter { loraTargets.contains($0.rawValue) }
        return o
    }

    /// Takes rank, alpha, rsLoRA and targets from an adapter the run starts from (`init_adapter`).
    public mutating func adopt(_ o: LoRAOptions) {
        loraRank = o.rank; loraAlpha = Double(o.alpha); useRSLoRA = o.rsLoRA; loraTargets = o.targets.map(\.rawValue)
    }

    /// Keys that must agree between a checkpoint and the run resuming from it.
    public static let resumeInvariants = ["method", "model", "precision", "quant", "data", "max_length", "batch_size", "seed", "lora_rank",
                                         "lora_alpha", "lora_targets", "use_rslora", "init_adapter", "lora_dropout", "learning_rate", "schedule",
                                         "warmup_steps", "max_steps", "epochs", "weight_decay", "train_on_prompt", "num_virtual_tokens"]
}

