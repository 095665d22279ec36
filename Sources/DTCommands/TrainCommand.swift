// `dtrain train`: the YAML config and every key as a flag, resolved, printed by rank 0 and saved; progress
// lines; metrics.jsonl; checkpoints; the final adapter in runs/NAME/final/.
import ArgumentParser
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTTokenizer
import DTTraining
import Foundation

struct Train: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Fine-tune an adapter (LoRA) on a dataset, on one process or under mpirun.")

    @Option(help: "YAML file of configuration keys (flags of the same name override it).") var config: String?
    @Option(help: "lora, qlora, prompt or probe.") var method: String?
    @Option(help: "GGUF file or HF directory (default: the default model).") var model: String?
    @Option(help: "Frozen weights in memory: fp32, as-stored or nf4.") var precision: String?
    @Option(help: "Frozen-weight products: auto (bf16 where the CPU has AVX512_BF16 or AMX), bf16 or fp32.") var compute: String?
    @Option(help: "QLoRA base: nf4 or as-stored.") var quant: String?
    @Option(help: "Frozen base across ranks: auto, sharded or replicated.") var placement: String?
    @Option(help: "Training data (.jsonl or .txt).") var data: String?
    @Option(help: "Validation data.") var validData: String?
    @Option(help: "Fraction held out for validation when no --valid-data.") var validSplit: Double?
    @Option(help: "Run directory (checkpoints, metrics, final adapter).") var output: String?
    @Option(help: "Tokens per example at most.") var maxLength: Int?
    @Option(help: "Also train on prompt tokens (true/false).") var trainOnPrompt: Bool?
    @Option(help: "Pack several examples per row, attention kept within each (true/false; lora, qlora).") var packing: Bool?
    @Option(help: "Chat template family instead of the model's.") var chatTemplate: String?
    @Option(help: "Examples per optimizer step (all ranks).") var batchSize: Int?
    @Option(help: "Examples per forward/backward on a rank.") var microBatchSize: Int?
    @Option(help: "Passes over the data.") var epochs: Double?
    @Option(help: "Optimizer steps (overrides epochs).") var maxSteps: Int?
    @Option(help: "Peak learning rate.") var learningRate: Double?
    @Option(help: "constant, linear or cosine.") var schedule: String?
    @Option(help: "Linear warmup steps.") var warmupSteps: Int?
    @Option(help: "AdamW weight decay.") var weightDecay: Double?
    @Option(help: "Gradient clipping norm (0: off).") var maxGradNorm: Double?
    @Option(help: "Seed.") var seed: Int?
    @Option(help: "LoRA rank.") var loraRank: Int?
    @Option(help: "LoRA alpha.") var loraAlpha: Double?
    @Option(help: "LoRA dropout.") var loraDropout: Double?
    @Option(help: "LoRA target projections, comma-separated.") var loraTargets: String?
    @Option(help: "rsLoRA scaling (true/false).") var useRslora: Bool?
    @Option(help: "DoRA: also train a magnitude per output feature (PEFT use_dora; true/false; lora, qlora).") var useDora: Bool?
    @Option(help: "Start LoRA from this adapter: a PEFT directory or a llama.cpp GGUF adapter (its rank, alpha and targets are used).") var initAdapter: String?
    @Option(help: "Recompute activations in backward (true/false).") var recompute: Bool?
    @Option(help: "Steps between progress lines.") var logEvery: Int?
    @Option(help: "Also write TensorBoard event files into the run directory (true/false).") var tensorboard: Bool?
    @Option(help: "Steps between validation losses.") var evalEvery: Int?
    @Option(help: "Steps between checkpoints.") var saveEvery: Int?
    @Option(help: "Checkpoints kept.") var keepCheckpoints: Int?
    @Option(help: "never, auto or a checkpoint directory.") var resume: String?
    @Option(help: "BLAS threads per rank (0: automatic).") var threads: Int?
    @Option(help: "Prompt tuning: virtual tokens.") var numVirtualTokens: Int?
    @Option(help: "Prompt tuning: TEXT, SAMPLE_VOCAB or RANDOM.") var promptInit: String?
    @Option(help: "Prompt tuning: initialisation text.") var promptInitText: String?
    @Option(help: "Probe: features after this many layers (-1: final).") var probeLayer: Int?
    @Option(help: "Probe: last or mean pooling.") var probePooling: String?
    @Option(help: "Probe: train a bias (true/false).") var probeBias: Bool?
    @Option(help: "Probe: epochs over the cached features.") var probeEpochs: Int?
    @Option(help: "Probe: rows per update (0: full batch).") var probeBatchSize: Int?
    @Option(help: "Probe: learning rate.") var probeLearningRate: Double?
    @Option(help: "Probe: none or balanced class weights.") var classWeights: String?
    @Option(help: "Probe: early-stopping patience in epochs (0: off).") var earlyStoppingPatience: Int?
    @Option(help: "A non-finite loss or gradient norm: stop (default; nothing is written) or skip (the step).") var nanPolicy: String?
    @Option(help: "Replace another run's checkpoints and final/ in --output (true/false; else that directory is refused).") var overwrite: Bool?
    @Option(help: "On > 1 rank: abort, naming the stalled rank, when no step completes within this many median step times (0: off).") var watchdogFactor: Double?
    @Option(help: "The watchdog's limit in seconds is at least this.") var watchdogMinSeconds: Double?

    func flags() -> [(String, String)] {
        let all: [(String, Any?)] = [
            ("method", method), ("model", model), ("precision", precision), ("compute", compute), ("quant", quant), ("placement", placement), ("data", data), ("valid_data", validData),
            ("valid_split", validSplit), ("output", output), ("max_length", maxLength), ("train_on_prompt", trainOnPrompt), ("packing", packing),
            ("chat_template", chatTemplate), ("batch_size", batchSize), ("micro_batch_size", microBatchSize), ("epochs", epochs),
            ("max_steps", maxSteps), ("learning_rate", learningRate), ("schedule", schedule), ("warmup_steps", warmupSteps),
            ("weight_decay", weightDecay), ("max_grad_norm", maxGradNorm), ("seed", seed), ("lora_rank", loraRank),
            ("lora_alpha", loraAlpha), ("lora_dropout", loraDropout), ("lora_targets", loraTargets), ("use_rslora", useRslora), ("use_dora", useDora), ("init_adapter", initAdapter),
            ("recompute", recompute), ("log_every", logEvery), ("tensorboard", tensorboard), ("eval_every", evalEvery), ("save_every", saveEvery),
            ("keep_checkpoints", keepCheckpoints), ("resume", resume), ("threads", threads),
            ("num_virtual_tokens", numVirtualTokens), ("prompt_init", promptInit), ("prompt_init_text", promptInitText),
            ("probe_layer", probeLayer), ("probe_pooling", probePooling), ("probe_bias", probeBias), ("probe_epochs", probeEpochs),
            ("probe_batch_size", probeBatchSize), ("probe_learning_rate", probeLearningRate), ("class_weights", classWeights),
            ("early_stopping_patience", earlyStoppingPatience), ("nan_policy", nanPolicy), ("overwrite", overwrite),
            ("watchdog_factor", watchdogFactor), ("watchdog_min_seconds", watchdogMinSeconds),
        ]
        return all.compactMap { key, value in value.map { (key, "\($0)") } }
    }

    func run() throws {
        var resolved = TrainConfig()
        do {
            if let config { try resolved.apply(yaml: try TextFiles.readUTF8(config), source: config) }
            for (key, value) in flags() { try resolved.set(key, value, source: "--\(key.replacingOccurrences(of: "_", with: "-"))") }
            guard !resolved.data.isEmpty else { throw ValidationError("no training data: set data in the config or pass --data") }
        } catch {
            Console.error("error: \(error)")
            throw ExitCode(1)
        }
        let runtime = Runtime(threads: resolved.threads > 0 ? resolved.threads : nil)
        runtime.run {
            if resolved.method == "probe" { try ProbeRun.execute(resolved, runtime: runtime) } else { try TrainingRun.execute(resolved, runtime: runtime) }
        }
    }
}

public enum TrainingRun {
    /// Loads everything, trains, writes the final adapter. Used by `dtrain train` and the tests.
    public static func execute(_ configIn: TrainConfig, runtime: Runtime) throws {
        // From here on SIGTERM/SIGUSR1 stop the run gracefully (after the first step if one arrives while loading;
        // ignored once the last step is done, so the final adapter is always complete).
        StopSignals.install()
        defer { StopSignals.uninstall() }
        var config = configIn
        if config.model.isEmpty { config.model = DefaultModel.path }
        if config.useDoRA && !["lora", "qlora"].contains(config.method) {
            throw CommandError("use_dora: true applies to lora and qlora, not to method \(config.method)")
        }
        if config.packing && !["lora", "qlora"].contains(config.method) {
            throw CommandError("packing: true applies to lora and qlora, not to method \(config.method) (prompt tuning puts virtual tokens before each example)")
        }
        try Checkpoint.checkOutput(config.output, resume: config.resume, overwrite: config.overwrite)
        let comm = runtime.comm
        let residentBefore = MemoryStats.residentBytes()
        let compute = try config.computePrecision()
        let placement = config.basePlacement(ranks: comm.size)
        let loaded = try ModelLoader.load(config.model, precision: config.weightPrecision, compute: compute, maxPositions: config.maxLength,
                                          placement: placement, comm: comm) { modelConfig in
            let base = MemoryPreflight.baseEstimate(modelConfig, precision: config.weightPrecision, compute: compute, ranks: comm.size,
                                                    sharded: placement == .sharded)
            try MemoryPreflight.check([("frozen base", base)], stage: "loading the base", config: config, runtime: runtime)
        }
        let baseResident = perRank(Double(MemoryStats.residentBytes() - residentBefore), comm: comm)
        let template = try? ChatTemplate(jinja: loaded.tokenizer.chatTemplate, named: config.chatTemplate.isEmpty ? nil : config.chatTemplate,
                                         source: loaded.path)
        var options = DataOptions(); options.maxLength = config.maxLength; options.trainOnPrompt = config.trainOnPrompt
        var train = try Dataset.load(path: config.data, tokenizer: loaded.tokenizer, template: template, options: options)
        var valid: Dataset?
        if !config.validData.isEmpty {
            valid = try Dataset.load(path: config.validData, tokenizer: loaded.tokenizer, template: template, options: options)
        } else if config.validSplit > 0 {
            let parts = try train.split(validFraction: config.validSplit, seed: UInt64(config.seed))
            train = parts.train
            valid = parts.valid
        }
        var initial: LoRAWeights?
        if !config.initAdapter.isEmpty {
            guard ["lora", "qlora"].contains(config.method) else {
                throw CommandError("init_adapter applies to lora and qlora, not to method \(config.method)")
            }
            let weights = try LoRAWeights.read(config.initAdapter, config: loaded.model.config)
            config.adopt(weights.options)
            initial = weights
        }
        let adapter = try makeAdapter(config, loaded: loaded, train: train, valid: valid, initial: initial)
        let longest = max(train.longest, valid?.longest ?? 0), V = adapter.virtualTokens
        try loaded.model.reservePositions(V + longest, for: V > 0 ? "\(V) virtual tokens (num_virtual_tokens) before the longest example (\(longest) tokens)"
                                                                   : "the longest example (\(longest) tokens; lower max_length)")
        let shape = Trainer.workspaceShape(config: config, train: train, valid: valid, virtualTokens: V)
        let doraBytes = (adapter as? LoRAAdapter)?.doraBytes ?? 0   // allocated, not yet touched
        try MemoryPreflight.check([("activations, gradients and scratch",
                                    ForwardWorkspace.estimatedBytes(model: loaded.model, batch: shape.batch, length: shape.length,
                                                                    mode: .training(recompute: config.recompute)))]
                                  + (doraBytes > 0 ? [("DoRA's saved frozen products", Double(doraBytes))] : []),
                                  stage: "the training workspace (\(shape.batch) × \(shape.length) tokens)", config: config, runtime: runtime)
        let trainer = Trainer(config: config, comm: comm, model: loaded.model, tokenizer: loaded.tokenizer, train: train, valid: valid,
                              adapter: adapter)
        if comm.isRoot {
            try AtomicDirectory.makeDirectory(config.output)
            if config.overwrite { try Checkpoint.clearPreviousRun(config.output) }
            try AtomicDirectory.writeFile((config.output as NSString).appendingPathComponent("config.yaml"), Data(config.yaml.utf8))
            runtime.log("dtrain train — resolved configuration:\n" + config.yaml.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            runtime.log("data: \(train.count) training examples\(valid.map { ", \($0.count) validation" } ?? "")\(train.truncated > 0 ? ", \(train.truncated) truncated to \(config.maxLength) tokens" : ""); \(trainer.totalSteps) steps of \(config.batchSize) examples on \(comm.size) rank(s) × \(runtime.threads) BLAS threads")
            let what = config.method == "prompt" ? "\(config.numVirtualTokens) virtual tokens"
                : "\(config.useDoRA ? "DoRA" : "LoRA") r=\(config.loraRank) on \(config.loraTargets.joined(separator: ","))\(initial.map { ", starting from \($0.source)" } ?? "")"
            runtime.log("trainable: \(trainer.adapter.arena.count) parameters (\(what)); memory per rank: base \(mib(loaded.model.baseBytes)) (\(loaded.model.placement.rawValue), \(config.weightPrecision.rawValue)), trainable+optimizer \(mib(trainer.adapter.arena.bytes)), activations \(mib(trainer.workspace.activationBytes))\(doraBytes > 0 ? ", DoRA saved products \(mib(doraBytes))" : ""), scratch \(mib(loaded.model.scratchBytes(trainer.workspace)))\(MemoryPreflight.available().map { "; available \(MemoryPreflight.gib($0.bytes)) (\($0.source))" } ?? "")")
            runtime.log("compute: \(compute.kernelDescription) [compute: \(config.compute); CPU \(CPUFeatures.summary)]")
            runtime.log("resident growth while loading the base: " + perRankBytes(baseResident))
        }
        trainer.onMessage = { runtime.log($0) }
        if config.resume != "never" {
            let target = config.resume == "auto" ? Checkpoint.list(config.output).last?.path : config.resume
            if let target { try trainer.resume(from: target) } else { runtime.log("resume: auto — no checkpoint in \(config.output), starting fresh") }
        }
        let metrics = MetricsLog(directory: config.output, enabled: comm.isRoot, tensorboard: config.tensorboard)
        var baseLoss: Double?
        if let valid, trainer.state.step == 0 {
            baseLoss = trainer.evaluate(valid, withAdapter: false)
            runtime.log(String(format: "validation loss before training: %.4f", baseLoss!))
            metrics.baseValidation(baseLoss!)
        }
        let started = Date(), firstStep = trainer.state.step
        trainer.onLog = { log in
            metrics.append(log)
            let eta = Double(log.totalSteps - log.step) * Date().timeIntervalSince(started) / Double(max(1, log.step - firstStep))
            runtime.log(String(format: "step %d/%d | loss %.4f | lr %.2e | grad norm %.3f | %.0f tokens/s | %@%@",
                               log.step, log.totalSteps, log.loss, log.learningRate, log.gradNorm, log.tokensPerSecond,
                               log.validLoss.map { String(format: "valid loss %.4f | ", $0) } ?? "", formatDuration(eta) as NSString))
        }
        trainer.watchdog = Watchdog(comm: comm, output: config.output, factor: config.watchdogFactor, minimumSeconds: config.watchdogMinSeconds)
        let finalValid = try trainer.run()
        if let skipped = trainer.state.skippedSteps, skipped > 0 {
            runtime.log("\(skipped) of \(trainer.totalSteps) steps were skipped (non-finite loss or gradient norm, nan_policy: skip)")
        }
        if comm.isRoot {
            let final = (config.output as NSString).appendingPathComponent("final")
            try AtomicDirectory.write(final, files: try trainer.adapter.peftFiles(baseModel: config.model)
                                      + [("trainer_state.json", try Checkpoint.stateJSON(trainer.state))])
            runtime.log("saved the adapter to \(final) (PEFT \(config.method == "prompt" ? "PROMPT_TUNING" : config.useDoRA ? "LoRA, use_dora" : "LoRA"))")
            if let baseLoss, let finalValid {
                runtime.log(String(format: "validation loss %.4f → %.4f (%.1f%% lower)", baseLoss, finalValid, 100 * (1 - finalValid / baseLoss)))
            }
        }
        try reportPeakMemory(runtime)
        if comm.isRoot { rmdir((config.output as NSString).appendingPathComponent(".heartbeat")) }   // empty once every rank is done
    }
}

/// The adapter kind of `config.method`, freshly initialised (identically on every rank).
func makeAdapter(_ config: TrainConfig, loaded: LoadedModel, train: Dataset, valid: Dataset?, initial: LoRAWeights? = nil) throws -> TrainableAdapter {
    switch config.method {
    case "prompt":
        let adapter = PromptTuningAdapter(model: loaded.model, virtualTokens: config.numVirtualTokens)
        try adapter.initialise(PromptInit(rawValue: config.promptInit)!, text: config.promptInitText, model: loaded.model,
                               tokenizer: loaded.tokenizer, seed: UInt64(config.seed))
        return adapter
    default:
        let shape = Trainer.workspaceShape(config: config, train: train, valid: valid, virtualTokens: 0)
        // DoRA keeps every layer's frozen products for backward unless each layer's forward reruns before it.
        if let initial {
            return initial.adapter(model: loaded.model, maxRows: shape.batch * shape.length, dropout: config.loraOptions.dropout,
                                   useDoRA: config.useDoRA, savesEveryLayer: !config.recompute)
        }
        return LoRAAdapter(model: loaded.model, options: config.loraOptions, maxRows: shape.batch * shape.length, seed: UInt64(config.seed),
                           savesEveryLayer: !config.recompute)
    }
}

/// `value` of every rank, in rank order, on every rank (collective).
func perRank(_ value: Double, comm: Communicator) -> [Double] {
    var all = [Double](repeating: 0, count: comm.size)
    all[comm.rank] = value
    return comm.allReduceSum(all)
}

/// Every rank's peak RSS, printed by rank 0.
func reportPeakMemory(_ runtime: Runtime) throws {
    let peaks = perRank(Double(MemoryStats.peakResidentBytes()), comm: runtime.comm)
    runtime.log("peak RSS per rank: " + perRankBytes(peaks))
}

/// "rank 0 12.3 MiB, rank 1 …"
func perRankBytes(_ values: [Double]) -> String {
    values.enumerated().map { "rank \($0.offset) \(mib(Int($0.element)))" }.joined(separator: ", ")
}

/// "12.3 MiB", or "45.6 KiB" below one MiB (tiny models).
func mib(_ bytes: Int) -> String {
    bytes < 1_048_576 ? String(format: "%.1f KiB", Double(bytes) / 1024) : String(format: "%.1f MiB", Double(bytes) / 1_048_576)
}
func formatDuration(_ s: Double) -> String {
    guard s.isFinite else { return "ETA ?" }
    let t = Int(s.rounded())
    return t >= 3600 ? "ETA \(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "ETA \(t / 60)m\(t % 60)s" : "ETA \(t)s"
}

