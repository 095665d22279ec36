// A training run (lora, qlora, prompt) from a resolved configuration: load, data, adapter, memory preflight, the
// trainer, resume, metrics, the final adapter. `dtrain train` parses and calls it; so do the tests.
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTTokenizer
import DTTraining
import Foundation

public enum TrainingRun {
    /// Loads everything, trains, writes the final adapter. Used by `dtrain train` and the tests.
    public static func execute(_ configIn: TrainConfig, runtime: Runtime) throws {
        // From here on SIGTERM/SIGUSR1 stop the run gracefully (after the first step if one arrives while loading;
        // ignored once the last step is done, so the final adapter is always complete).
        StopSignals.install()
        defer { StopSignals.uninstall() }
        var config = configIn
        if config.model.isEmpty { config.model = DefaultModel.path }
        try checkMethodKeys(config)
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
        } report: { runtime.log($0) }
        let baseResident = perRank(Double(MemoryStats.residentBytes() - residentBefore), comm: comm)
        let loadPeak = perRank(Double(MemoryStats.peakResidentBytes() - residentBefore), comm: comm)
        let bytesRead = perRank(Double(loaded.model.bytesRead), comm: comm)
        let (train, valid) = try loadData(config, tokenizer: loaded.tokenizer, modelPath: loaded.path)
        var initial: LoRAWeights?
        if !config.initAdapter.isEmpty {
            guard config.method.isLoRA else {
                throw CommandError("init_adapter applies to lora and qlora, not to method \(config.method.rawValue)")
            }
            let weights = try LoRAWeights.read(config.initAdapter, config: loaded.model.config)
            config.adopt(weights.options)
            initial = weights
        }
        if config.recompute == .auto {
            let virtual = config.method == .prompt ? config.numVirtualTokens : 0
            let choice = MemoryPreflight.chooseRecompute(config, model: loaded.model, comm: comm,
                                                         shape: Trainer.workspaceShape(config: config, train: train, valid: valid, virtualTokens: virtual))
            config.recompute = choice.on ? .on : .off
            runtime.log("recompute: auto → \(config.recompute.rawValue): \(choice.reason)")
        }
        let adapter = try makeAdapter(config, loaded: loaded, initial: initial)
        let longest = max(train.longest, valid?.longest ?? 0), virtual = adapter.virtualTokens
        try loaded.model.reservePositions(virtual + longest, for: virtual > 0 ? "\(virtual) virtual tokens (num_virtual_tokens) before the longest example (\(longest) tokens)"
                                                                   : "the longest example (\(longest) tokens; lower max_length)")
        let shape = Trainer.workspaceShape(config: config, train: train, valid: valid, virtualTokens: virtual)
        let doraBytes = Int(LoRAAdapter.doraBytes(model: loaded.model, options: config.loraOptions, rows: shape.batch * shape.length,
                                                  everyLayer: !config.recomputes))
        try MemoryPreflight.check([("activations, gradients and scratch",
                                    ForwardWorkspace.estimatedBytes(model: loaded.model, batch: shape.batch, length: shape.length,
                                                                    mode: .training(recompute: config.recomputes)))]
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
            let what = config.method == .prompt ? "\(config.numVirtualTokens) virtual tokens"
                : "\(config.useDoRA ? "DoRA" : "LoRA") r=\(config.loraRank) on \(config.loraTargets.map(\.rawValue).joined(separator: ","))\(initial.map { ", starting from \($0.source)" } ?? "")"
            runtime.log("trainable: \(trainer.adapter.arena.count) parameters (\(what)); memory per rank: base \(mib(loaded.model.baseBytes)) (\(loaded.model.placement.rawValue), \(config.weightPrecision.rawValue)), trainable+optimizer \(mib(trainer.adapter.arena.bytes)), activations \(mib(trainer.workspace.activationBytes))\(doraBytes > 0 ? ", DoRA saved products \(mib(doraBytes))" : ""), scratch \(mib(loaded.model.scratchBytes(trainer.workspace)))\(MemoryPreflight.available().map { "; available \(MemoryPreflight.gib($0.bytes)) (\($0.source))" } ?? "")")
            runtime.log("compute: \(compute.kernelDescription) [compute: \(config.compute.rawValue); CPU \(CPUFeatures.summary)]")
            runtime.log("resident growth while loading the base: " + perRankBytes(baseResident) + " (peak above the start: " + perRankBytes(loadPeak) + ")")
            runtime.log("matrices read from the model files: " + perRankBytes(bytesRead) + " of \(mib(loaded.model.storedMatrixBytes))"
                        + (loaded.model.splitsAcrossRanks ? " (each rank reads its share)" : ""))
        }
        trainer.onMessage = { runtime.log($0) }
        if let dir = ProcessInfo.processInfo.environment["DTRAIN_DUMP_GRADIENTS"], comm.isRoot {
            trainer.onReducedGradient = { step, gradient in   // a diagnostic (docs/usage.md)
                let data = SafetensorsWriter.encode([.init(name: "gradient", shape: [gradient.count], values: Array(gradient))])
                do { try data.write(to: URL(fileURLWithPath: dir + "/gradient-step-\(step).safetensors")) } catch {
                    runtime.log("DTRAIN_DUMP_GRADIENTS: cannot write step \(step)'s gradient into \(dir): \(error.localizedDescription)")
                }
            }
        }
        switch config.resume {
        case .never: break
        case .checkpoint(let path): try trainer.resume(from: path)
        case .auto:
            if let newest = Checkpoint.list(config.output).last { try trainer.resume(from: newest.path) }
            else { runtime.log("resume: auto — no checkpoint in \(config.output), starting fresh") }
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
            runtime.log("saved the adapter to \(final) (PEFT \(config.method == .prompt ? "PROMPT_TUNING" : config.useDoRA ? "LoRA, use_dora" : "LoRA"))")
            if let baseLoss, let finalValid {
                runtime.log(String(format: "validation loss %.4f → %.4f (%.1f%% lower)", baseLoss, finalValid, 100 * (1 - finalValid / baseLoss)))
            }
        }
        if loaded.model.splitsAcrossRanks {
            let traffic = loaded.model.gatherTraffic
            let received = perRank(Double(traffic.receivedBytes), comm: comm), seconds = perRank(traffic.seconds, comm: comm)
            let steps = max(1, trainer.state.step - firstStep)
            runtime.log("all-gathers of the sharded base: \(traffic.gathers) (\(traffic.gathers / steps) per step), received "
                        + received.enumerated().map { String(format: "rank %d %.2f GiB in %.1f s", $0.offset, $0.element / 1_073_741_824, seconds[$0.offset]) }.joined(separator: ", ")
                        + String(format: "; per layer and step: %.1f MiB received by each rank", received.max()! / Double(steps * loaded.model.layers.count) / 1_048_576))
        }
        try reportPeakMemory(runtime)
        if comm.isRoot { rmdir((config.output as NSString).appendingPathComponent(".heartbeat")) }   // empty once every rank is done
    }
}

extension TrainingRun {
    /// Keys that apply to some methods only are refused for the others.
    static func checkMethodKeys(_ config: TrainConfig) throws {
        if config.useDoRA && !config.method.isLoRA {
            throw CommandError("use_dora: true applies to lora and qlora, not to method \(config.method.rawValue)")
        }
        if config.packing && !config.method.isLoRA {
            throw CommandError("packing: true applies to lora and qlora, not to method \(config.method.rawValue) (prompt tuning puts virtual tokens before each example)")
        }
    }

    /// The training examples and the validation set (valid_data, or valid_split of the training data),
    /// tokenized with the model's chat template.
    static func loadData(_ config: TrainConfig, tokenizer: Tokenizer, modelPath: String) throws -> (train: Dataset, valid: Dataset?) {
        let template = try ModelChatTemplate(tokenizer: tokenizer, named: config.chatTemplate?.rawValue, source: modelPath)
        var options = DataOptions(); options.maxLength = config.maxLength; options.trainOnPrompt = config.trainOnPrompt
        let train = try Dataset.load(path: config.data, tokenizer: tokenizer, template: template, options: options)
        if !config.validData.isEmpty {
            return (train, try Dataset.load(path: config.validData, tokenizer: tokenizer, template: template, options: options))
        } else if config.validSplit > 0 {
            let parts = try train.split(validFraction: config.validSplit, seed: UInt64(config.seed))
            return (parts.train, parts.valid)
        }
        return (train, nil)
    }
}

/// The adapter kind of `config.method`, freshly initialised (identically on every rank).
/// Its row scratch is sized later by the workspace it runs with (the trainer's).
public func makeAdapter(_ config: TrainConfig, loaded: LoadedModel, initial: LoRAWeights? = nil) throws -> TrainableAdapter {
    switch config.method {
    case .prompt:
        let adapter = PromptTuningAdapter(model: loaded.model, virtualTokens: config.numVirtualTokens)
        try adapter.initialise(config.promptInit, text: config.promptInitText, model: loaded.model,
                               tokenizer: loaded.tokenizer, seed: UInt64(config.seed))
        return adapter
    default:
        try config.loraOptions.checkTargets(loaded.model.config)
        if let initial { return initial.adapter(model: loaded.model, dropout: config.loraOptions.dropout, useDoRA: config.useDoRA) }
        return LoRAAdapter(model: loaded.model, options: config.loraOptions, seed: UInt64(config.seed))
    }
}

/// `value` of every rank, in rank order, on every rank (collective).
public func perRank(_ value: Double, comm: Communicator) -> [Double] {
    var all = [Double](repeating: 0, count: comm.size)
    all[comm.rank] = value
    return comm.allReduceSum(all)
}

/// Every rank's peak RSS, printed by rank 0.
public func reportPeakMemory(_ runtime: Runtime) throws {
    let peaks = perRank(Double(MemoryStats.peakResidentBytes()), comm: runtime.comm)
    runtime.log("peak RSS per rank: " + perRankBytes(peaks))
}

/// "rank 0 12.3 MiB, rank 1 …"
public func perRankBytes(_ values: [Double]) -> String {
    values.enumerated().map { "rank \($0.offset) \(mib(Int($0.element)))" }.joined(separator: ", ")
}

/// "12.3 MiB", or "45.6 KiB" below one MiB (tiny models).
public func mib(_ bytes: Int) -> String {
    bytes < 1_048_576 ? String(format: "%.1f KiB", Double(bytes) / 1024) : String(format: "%.1f MiB", Double(bytes) / 1_048_576)
}
public func formatDuration(_ s: Double) -> String {
    guard s.isFinite else { return "ETA ?" }
    let t = Int(s.rounded())
    return t >= 3600 ? "ETA \(t / 3600)h\(t % 3600 / 60)m" : t >= 60 ? "ETA \(t / 60)m\(t % 60)s" : "ETA \(t)s"
}

