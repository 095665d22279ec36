// The training loop. The global batch of step s is samples [s·G, (s+1)·G) of the seeded order (independent of
// the number of ranks); each rank runs its micro-batches of them (RankSchedule), and one all-reduce carries all
// trainable gradients plus the loss sum and target-token count. Then clip, AdamW, log, evaluate, checkpoint.
// A non-finite loss or gradient norm (the same on every rank: both come from the reduced sums) never reaches
// AdamW: nan_policy stop ends the run before anything is written, skip leaves adapter and moments unchanged.
// The same all-reduce carries one more float, the number of ranks a SIGTERM/SIGUSR1 reached (StopSignals): when
// it is not 0, every rank stops after that step, rank 0 checkpoints, and the run throws StoppedBySignal. The
// watchdog (DTParallel/Watchdog) hears of each step entered and completed.
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTTokenizer
import Foundation

public struct StepLog: Sendable {
    public var step: Int, totalSteps: Int
    public var loss: Double, learningRate: Double, gradNorm: Double
    public var tokensPerSecond: Double, secondsPerStep: Double
    public var validLoss: Double?
}

/// A step whose loss or gradient norm is not finite, with nan_policy: stop.
public struct NumericalError: Error, CustomStringConvertible {
    public var description: String
}

public final class Trainer {
    public let config: TrainConfig
    public let comm: Communicator
    public let model: LlamaModel
    public let train: Dataset
    public let valid: Dataset?
    public let adapter: TrainableAdapter
    public let workspace: ForwardWorkspace
    public var optimizer: AdamW
    public private(set) var state: TrainerState
    public let totalSteps: Int
    public var onLog: (StepLog) -> Void = { _ in }
    public var onMessage: (String) -> Void = { _ in }
    /// Sees each step's reduced, normalised gradient (before clipping) on every rank; for diagnostics and tests.
    public var onReducedGradient: ((_ step: Int, _ gradient: UnsafeBufferPointer<Float>) -> Void)?
    /// The stalled-rank watchdog, when the run has one (started and stopped by `run`).
    public var watchdog: Watchdog?
    let labels: UnsafeMutableBufferPointer<Int32>
    let padToken: Int32

    /// Rows (micro-batch × (virtual tokens + longest example)) the adapter must be able to hold.
    public static func workspaceShape(config: TrainConfig, train: Dataset, valid: Dataset?, virtualTokens: Int) -> (batch: Int, length: Int) {
        let longest = max(train.examples.map(\.tokens.count).max() ?? 1, valid?.examples.map(\.tokens.count).max() ?? 1)
        // Packed rows are max_length long (as TRL packs), so several examples share one.
        return (config.microBatchSize, virtualTokens + (config.packing ? max(config.maxLength, longest) : min(config.maxLength, longest)))
    }

    public init(config: TrainConfig, comm: Communicator, model: LlamaModel, tokenizer: Tokenizer, train: Dataset, valid: Dataset?,
                adapter: TrainableAdapter) {
        self.config = config; self.comm = comm; self.model = model; self.train = train; self.valid = valid
        let shape = Self.workspaceShape(config: config, train: train, valid: valid, virtualTokens: adapter.virtualTokens)
        workspace = ForwardWorkspace(model: model, batch: shape.batch, length: shape.length, mode: .training(recompute: config.recomputes))
        self.adapter = adapter
        adapter.reserve(for: workspace)   // the adapter's row scratch, sized by this workspace (the model repeats it per pass)
        optimizer = AdamW(weightDecay: config.weightDecay)
        state = TrainerState(step: 0, samplesSeen: 0, optimizerStep: 0, worldSize: comm.size)
        totalSteps = config.maxSteps > 0 ? config.maxSteps
            : max(1, Int((config.epochs * Double(train.count) / Double(config.batchSize)).rounded(.up)))
        labels = .allocate(capacity: workspace.maxBatch * workspace.maxLength)
        padToken = tokenizer.padToken ?? tokenizer.eosToken ?? 0
    }

    deinit { labels.deallocate() }

    /// Dataset index of global sample position p.
    func sample(_ p: Int) -> Int {
        let epoch = p / train.count
        if epoch != cachedEpoch { cachedOrder = SampleOrder.permutation(count: train.count, seed: UInt64(config.seed), epoch: epoch); cachedEpoch = epoch }
        return cachedOrder[p % train.count]
    }
    private var cachedEpoch = -1
    private var cachedOrder: [Int] = []

    /// Loads examples (after the adapter's virtual tokens) into the workspace and the label buffer, selects
    /// the target rows for the LM head (their labels first in the buffer) and prepares the adapter; returns
    /// the number of target tokens.
    func load(_ examples: [TrainingExample], positions: [Int], training: Bool, step: Int, packed: Bool = false) -> Int {
        if packed { return loadPacked(examples, positions: positions, training: training, step: step) }
        let virtual = adapter.virtualTokens
        workspace.load(examples.map(\.tokens), padToken: padToken, reserved: virtual)
        let T = workspace.length
        var keys: [UInt64] = []
        keys.reserveCapacity(workspace.rows)
        for b in 0..<workspace.batch {
            for t in 0..<T {
                let i = t - virtual
                let label = i >= 0 && i < examples[b].labels.count ? examples[b].labels[i] : ignoreLabel
                labels[b * T + t] = label
                keys.append(UInt64(positions[b]) << 20 | UInt64(t))
            }
        }
        adapter.prepare(training: training, step: step, rowKeys: keys)
        // The LM head and the loss run only where there is a target (prompt tokens and padding have none).
        return workspace.selectTargets(labels: labels.baseAddress!)
    }

    /// `load` with the examples packed into as few rows as they fit (`packing: true`): no padding between
    /// examples, each attending only to itself; a token keeps its dropout key (sample, position).
    func loadPacked(_ examples: [TrainingExample], positions: [Int], training: Bool, step: Int) -> Int {
        precondition(adapter.virtualTokens == 0, "packing has no place for per-example virtual tokens")
        let placement = workspace.loadPacked(examples.map(\.tokens), length: workspace.maxLength, padToken: padToken)
        let T = workspace.length
        var keys = [UInt64](repeating: UInt64.max, count: workspace.rows)
        for i in 0..<workspace.rows { labels[i] = ignoreLabel }
        for (e, at) in placement.enumerated() {
            for (i, label) in examples[e].labels.enumerated() {
                labels[at.row * T + at.column + i] = label
                keys[at.row * T + at.column + i] = UInt64(positions[e]) << 20 | UInt64(i)
            }
        }
        adapter.prepare(training: training, step: step, rowKeys: keys)
        return workspace.selectTargets(labels: labels.baseAddress!)
    }

    /// A one-token batch with no target: keeps the ranks' passes in step without contributing.
    func loadEmpty(training: Bool, step: Int) -> Int {
        let empty = TrainingExample(tokens: [padToken], labels: [ignoreLabel], line: 0)
        return load([empty], positions: [0], training: training, step: step)
    }

    /// One optimizer step; returns the mean loss, the gradient norm before clipping, the target tokens,
    /// whether AdamW ran (not when the loss or the norm is NaN or infinite) and how many ranks have received a
    /// stop signal (the same on every rank).
    public func step(_ s: Int) -> (loss: Double, norm: Double, targets: Int, applied: Bool, stopRanks: Int) {
        let G = config.batchSize
        adapter.arena.zeroGradients()
        var lossSum = 0.0, targets = 0
        // A rank with no micro-batch left runs an empty one that contributes no gradient.
        for items in RankSchedule(count: G, batch: config.microBatchSize, comm: comm).allPasses {
            let positions = items.map { s * G + $0 }
            targets += positions.isEmpty ? loadEmpty(training: true, step: s)
                : load(positions.map { train.examples[sample($0)] }, positions: positions, training: true, step: s, packed: config.packing)
            model.forward(workspace, adapter: adapter)
            lossSum += Profile.measure("loss") {
                model.crossEntropy(logits: workspace.logits.pointer, labels: labels.baseAddress!, rows: workspace.logitRows, gradScale: 1)
            }
            model.backward(workspace, adapter: adapter)
        }
        let arena = adapter.arena
        arena.fused[arena.count] = Float(lossSum)
        arena.fused[arena.count + 1] = Float(targets)
        arena.fused[arena.count + 2] = StopSignals.received != 0 ? 1 : 0
        watchdog?.entering(s)
        Profile.measure("all-reduce") { comm.allReduceSum(arena.fused.buffer) }
        let stopRanks = Int(arena.fused[arena.count + 2])
        let globalTargets = max(1, arena.fused[arena.count + 1])
        let inverse = 1 / globalTargets
        for i in 0..<arena.count { arena.gradients[i] *= inverse }
        onReducedGradient?(s, UnsafeBufferPointer(start: arena.gradients, count: arena.count))
        let norm = GradientClipping.clip(arena.gradients, count: arena.count, maxNorm: Float(config.maxGradNorm))
        let loss = Double(arena.fused[arena.count]) / Double(globalTargets)
        guard loss.isFinite && norm.isFinite else { return (loss, Double(norm), Int(globalTargets), false, stopRanks) }
        let factor = config.schedule.factor(step: s, warmup: config.warmupSteps, total: totalSteps)
        Profile.measure("optimizer") { optimizer.update(arena, lr: config.learningRate * Double(factor)) }
        return (loss, Double(norm), Int(globalTargets), true, stopRanks)
    }

    /// Mean token loss of a dataset with the current adapter (split across ranks, sums all-reduced).
    public func evaluate(_ data: Dataset, withAdapter: Bool) -> Double {
        var sums = [0.0, 0.0]
        for items in RankSchedule(count: data.count, batch: workspace.maxBatch, comm: comm).allPasses {
            let chunk = Array(items)
            sums[1] += Double(chunk.isEmpty ? loadEmpty(training: false, step: 0)
                : load(chunk.map { data.examples[$0] }, positions: chunk, training: false, step: 0))
            model.forward(workspace, adapter: withAdapter ? adapter : nil)
            sums[0] += model.crossEntropy(logits: workspace.logits.pointer, labels: labels.baseAddress!, rows: workspace.logitRows, gradScale: 0)
        }
        sums = comm.allReduceSum(sums)
        return sums[0] / max(1, sums[1])
    }

    /// Continues from a checkpoint directory: adapter, optimizer moments and step.
    public func resume(from dir: String) throws {
        try Checkpoint.checkCompatible(dir, with: config)
        let loaded = try AdapterLoader.load(dir, model: model)
        guard loaded.arena.entries == adapter.arena.entries else {
            throw CommandError("\(dir): the checkpoint's adapter tensors do not match this run's adapter")
        }
        let saved = try Checkpoint.readState(dir)
        try saved.validate(file: (dir as NSString).appendingPathComponent("trainer_state.json"), totalSteps: totalSteps)
        adapter.arena.values.pointer.update(from: loaded.arena.values.pointer, count: adapter.arena.count)
        adapter.arena.valuesChanged()
        try Checkpoint.loadMoments(dir, into: adapter.arena)
        state = saved
        optimizer.step = state.optimizerStep
        onMessage("resumed from \(dir) at step \(state.step) (saved by \(state.worldSize) ranks, now \(comm.size))")
        state.worldSize = comm.size
    }

    public func saveCheckpoint() throws {
        guard comm.isRoot else { return }
        watchdog?.pause()
        defer { watchdog?.resume() }
        let dir = (config.output as NSString).appendingPathComponent(Checkpoint.name(step: state.step))
        try Checkpoint.save(directory: dir, adapterFiles: try adapter.peftFiles(baseModel: config.model),
                            arena: adapter.arena, state: state, configYAML: config.yaml)
        Checkpoint.prune(config.output, keep: config.keepCheckpoints)
    }

    /// The loop. Returns the final validation loss (if there is validation data).
    @discardableResult
    public func run() throws -> Double? {
        var validLoss: Double?
        watchdog?.start(step: state.step)
        defer { watchdog?.stop() }
        while state.step < totalSteps {
            let started = Date()
            let (loss, norm, _, applied, stopRanks) = step(state.step)
            if !applied {
                let what = loss.isFinite ? "gradient norm \(norm)" : "loss \(loss)"
                guard config.nanPolicy == .skip else {
                    let last = Checkpoint.list(config.output).last.map { "\($0.path) is the last good checkpoint" } ?? "there is no checkpoint yet"
                    throw NumericalError(description: "step \(state.step + 1)/\(totalSteps): non-finite \(what); stopped before writing anything (nan_policy: stop; --nan-policy skip skips such steps); \(last)")
                }
                onMessage("step \(state.step + 1)/\(totalSteps): non-finite \(what); step skipped (nan_policy: skip), adapter and optimizer unchanged")
                state.skippedSteps = (state.skippedSteps ?? 0) + 1
            } else {
                state.lastLoss = loss
            }
            state.step += 1; state.samplesSeen += config.batchSize; state.optimizerStep = optimizer.step
            let seconds = Date().timeIntervalSince(started)
            let evalNow = valid != nil && ((config.evalEvery > 0 && state.step % config.evalEvery == 0) || state.step == totalSteps)
            watchdog?.completed(state.step, seconds: seconds)
            if evalNow, let valid {
                watchdog?.pause()
                validLoss = evaluate(valid, withAdapter: true); state.bestValidLoss = min(state.bestValidLoss ?? .infinity, validLoss!)
                watchdog?.resume()
            }
            let tokens = (state.step - 1) * config.batchSize..<state.step * config.batchSize
            let stepTokens = tokens.reduce(0) { $0 + train.examples[sample($1)].tokens.count }
            if applied && (state.step % config.logEvery == 0 || state.step == totalSteps || evalNow) {
                let lr = config.learningRate * Double(config.schedule.factor(step: state.step - 1, warmup: config.warmupSteps, total: totalSteps))
                onLog(StepLog(step: state.step, totalSteps: totalSteps, loss: loss, learningRate: lr, gradNorm: norm,
                              tokensPerSecond: Double(stepTokens) / seconds, secondsPerStep: seconds, validLoss: evalNow ? validLoss : nil))
            }
            let stopping = stopRanks > 0 && state.step < totalSteps
            if (config.saveEvery > 0 && state.step % config.saveEvery == 0 && state.step < totalSteps) || stopping { try saveCheckpoint() }
            if stopping {
                throw StoppedBySignal(step: state.step, totalSteps: totalSteps, ranks: stopRanks,
                                      checkpoint: (config.output as NSString).appendingPathComponent(Checkpoint.name(step: state.step)))
            }
        }
        try saveCheckpoint()
        return validLoss
    }
}
