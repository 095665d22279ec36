// `dtrain plan`: what a training run with these keys will need on each rank — frozen base, trainable state,
// activations, scratch, peak resident memory — and how long its load and steps will take, without loading the
// whole model. It loads the model's first layer, then its first two (same files, same precision, placement and
// ranks), runs a few real training steps on each (same data, batch and recompute), and extrapolates every
// figure linearly in the layer count: f(L) = f(1) + (L − 1)·(f(2) − f(1)). Everything a layer adds — its
// frozen matrices, adapters, saved activations, page-cache pages of an as-stored base, time — is counted by
// the difference; what does not grow with layers (embedding, LM head, loss, optimizer overhead, libraries,
// tokenizer, data) by the first probe and the process itself. Peak memory is measured, not summed: the
// kernel's high-water mark (VmHWM, reset before each phase) while loading and while training.
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTTokenizer
import DTTraining
import Foundation

public enum PlanRun {
    /// What one probe of the model's first `layers` layers measured on this rank.
    public struct Probe {
        public var layers = 0
        /// Resident set when the probe started.
        public var start = 0.0
        public var base = 0.0, trainable = 0.0, activations = 0.0, scratch = 0.0
        /// Growth of the resident set above `start`: peak while loading, peak while training.
        public var loadPeak = 0.0, trainPeak = 0.0
        public var loadSeconds = 0.0, stepSeconds = 0.0
        /// Bytes of the buffers it allocated for training.
        public var held: Double { base + trainable + activations + scratch }
    }

    /// The plan of a run: the whole model's figures on this rank, extrapolated from the probes.
    public struct Plan {
        public var layers: Int
        /// The whole model's hyper-parameters.
        public var model: LlamaConfig
        public var probes: [Probe]
        /// Resident set before the measured probes: the process, its libraries, tokenizer, data and what the
        /// kernels keep after a first step.
        public var process: Double
        public var recompute: String
        public var shape: (batch: Int, length: Int)
        public var totalSteps: Int
        /// Steps timed on each probe.
        public var timedSteps: Int
        /// Tokens of an average step (batch_size examples of the data's mean length).
        public var tokensPerStep: Double

        /// A probe figure at the whole model's layer count.
        public func whole(_ figure: KeyPath<Probe, Double>) -> Double {
            guard probes.count > 1 else { return probes[0][keyPath: figure] }
            let one = probes[0][keyPath: figure], two = probes[1][keyPath: figure]
            return one + Double(layers - 1) * (two - one)
        }
        /// What one more layer adds to a probe figure.
        public func perLayer(_ figure: KeyPath<Probe, Double>) -> Double {
            probes.count > 1 ? probes[1][keyPath: figure] - probes[0][keyPath: figure] : 0
        }
        /// Expected peak RSS of the run, the larger of loading's and training's: the buffers a run allocates
        /// (all touched by its longest batch; a probe's first step may leave some untouched) plus what the probes'
        /// steps took beyond them, which does not grow with layers — a difference of two measured peaks times L
        /// would multiply their noise.
        public var peakRSS: Double {
            let beyond = probes.map { $0.trainPeak - $0.held }.max()!
            return process + max(whole(\.loadPeak), whole(\.held) + max(0, beyond))
        }
    }

    /// Measures the plan on every rank (collective: the probes load sharded bases and run real steps).
    public static func measure(_ configIn: TrainConfig, runtime: Runtime, probeSteps: Int) throws -> (plan: Plan, config: TrainConfig) {
        var config = configIn
        if config.model.isEmpty { config.model = DefaultModel.path }
        try TrainingRun.checkMethodKeys(config)
        guard config.method != .probe else { throw CommandError("dtrain plan covers lora, qlora and prompt; a linear probe needs only the forward (dtrain train --method probe prints its cache size)") }
        let comm = runtime.comm
        let compute = try config.computePrecision()
        let placement = config.basePlacement(ranks: comm.size)
        guard FileManager.default.fileExists(atPath: config.model) else {
            throw CommandError("the model is not at \(config.model)\(configIn.model.isEmpty ? "; run launch/setup.sh (or pass --model FILE)" : "")")
        }
        let source = try ModelSource(path: config.model)
        let tokenizer = try ModelLoader.tokenizer(for: source)
        let (train, valid) = try TrainingRun.loadData(config, tokenizer: tokenizer, modelPath: config.model)
        let L = source.config.layers
        var recompute = config.recompute.rawValue
        if config.recompute == .auto {   // decided once, for the whole model, as the run decides it
            // The first layer kept as stored (fp32: copied) is enough: the estimate needs the shapes and the scratch kind.
            let model = try LlamaModel(source: source.firstLayers(1), precision: config.weightPrecision == .fp32 ? .fp32 : .asStored,
                                       compute: compute, maxPositions: config.maxLength, placement: placement, comm: comm)
            let virtual = config.method == .prompt ? config.numVirtualTokens : 0
            let choice = MemoryPreflight.chooseRecompute(config, model: model, comm: comm,
                                                         shape: Trainer.workspaceShape(config: config, train: train, valid: valid, virtualTokens: virtual),
                                                         layers: L)
            config.recompute = choice.on ? .on : .off
            recompute = "auto → \(config.recompute.rawValue): \(choice.reason)"
        }
        // A first, unmeasured probe leaves in the process what any run keeps after its first steps (BLAS thread
        // buffers, oneDNN's kernels), so the measured probes' growth is only what their layers need.
        _ = try probe(layers: 1, config: config, source: source, tokenizer: tokenizer, train: train, valid: valid, comm: comm)
        var probes: [Probe] = [], trainers: [Trainer] = []
        for k in L >= 2 ? [1, 2] : [1] {   // the first stays loaded while the second is measured from its own start
            let (p, trainer) = try probe(layers: k, config: config, source: source, tokenizer: tokenizer, train: train, valid: valid, comm: comm)
            probes.append(p); trainers.append(trainer)
        }
        // Step times: the probes' steps alternate on the same batches, so the machine's drift and the batches'
        // lengths hit both alike; the per-layer time is the median of the paired differences. At least
        // `probeSteps` pairs, more while they take under 10 s in all.
        var first: [Double] = [], added: [Double] = []
        let timing = Date()
        var s = 1
        while s <= probeSteps || (s <= 200 && perRank(Date().timeIntervalSince(timing), comm: comm).max()! < 10) {
            var t = [Double]()
            for trainer in trainers {
                comm.barrier()
                let start = Date()
                _ = trainer.step(s % trainer.totalSteps)
                t.append(Date().timeIntervalSince(start))
            }
            first.append(t[0])
            if t.count > 1 { added.append(t[1] - t[0]) }
            s += 1
        }
        func median(_ v: [Double]) -> Double { v.isEmpty ? 0 : v.sorted()[v.count / 2] }
        probes[0].stepSeconds = median(first)
        if probes.count > 1 { probes[1].stepSeconds = probes[0].stepSeconds + max(0, median(added)) }
        let pairs = first.count
        let process = probes[0].start
        let shape = Trainer.workspaceShape(config: config, train: train, valid: valid,
                                           virtualTokens: config.method == .prompt ? config.numVirtualTokens : 0)
        let totalSteps = trainers[0].totalSteps
        return (Plan(layers: L, model: source.config, probes: probes, process: process, recompute: recompute, shape: shape, totalSteps: totalSteps, timedSteps: pairs,
                     tokensPerStep: Double(train.examples.reduce(0) { $0 + $1.tokens.count }) / Double(max(1, train.count)) * Double(config.batchSize)), config)
    }

    /// Loads the model's first `layers` layers as the run would and runs a first training step; memory is
    /// measured from the resident set at its start (after malloc hands back what was freed).
    static func probe(layers: Int, config: TrainConfig, source: ModelSource, tokenizer: Tokenizer, train: Dataset,
                      valid: Dataset?, comm: Communicator) throws -> (Probe, Trainer) {
        var p = Probe(); p.layers = layers
        MemoryStats.releaseFreedHeap()
        comm.barrier()
        p.start = Double(MemoryStats.residentBytes())
        MemoryStats.resetPeak()
        func grown() -> Double { Double(MemoryStats.peakSinceReset() ?? MemoryStats.peakResidentBytes()) - p.start }
        let loadStart = Date()
        let model = try LlamaModel(source: source.firstLayers(layers), precision: config.weightPrecision, compute: try config.computePrecision(),
                                   maxPositions: config.maxLength, placement: config.basePlacement(ranks: comm.size), comm: comm)
        comm.barrier()
        p.loadSeconds = Date().timeIntervalSince(loadStart)
        p.loadPeak = grown()
        let adapter = try makeAdapter(config, loaded: LoadedModel(model: model, tokenizer: tokenizer, path: source.path))
        let length = Trainer.workspaceShape(config: config, train: train, valid: valid, virtualTokens: adapter.virtualTokens).length
        try model.reservePositions(length, for: "the longest example (\(length) tokens, with virtual tokens)")
        MemoryStats.resetPeak()
        let trainer = Trainer(config: config, comm: comm, model: model, tokenizer: tokenizer, train: train, valid: valid, adapter: adapter)
        _ = trainer.step(0)   // first touch of every buffer: the run's peak is reached in its first step
        p.trainPeak = grown()
        p.base = Double(model.baseBytes)
        p.trainable = Double(adapter.arena.bytes)
        p.activations = Double(trainer.workspace.activationBytes)
        p.scratch = Double(model.scratchBytes(trainer.workspace))
        return (p, trainer)
    }

    /// Measures and prints the plan (rank 0, every rank's figures).
    public static func execute(_ config: TrainConfig, runtime: Runtime, probeSteps: Int) throws {
        let (plan, resolved) = try measure(config, runtime: runtime, probeSteps: probeSteps)
        let comm = runtime.comm
        // Every rank's figures gathered (collective), then printed by rank 0.
        let gathered = [plan.whole(\.base), plan.whole(\.trainable), plan.whole(\.activations), plan.whole(\.scratch), plan.process,
                        plan.process + plan.whole(\.loadPeak)].map { perRankBytes(perRank($0, comm: comm)) }
        let (base, trainable, activations, scratch, process, loading) = (gathered[0], gathered[1], gathered[2], gathered[3], gathered[4], gathered[5])
        let peaks = perRank(plan.peakRSS, comm: comm)
        let step = perRank(plan.whole(\.stepSeconds), comm: comm).max()!
        let load = perRank(plan.whole(\.loadSeconds), comm: comm).max()!
        let available = perRank(MemoryPreflight.available()?.bytes ?? .infinity, comm: comm)
        guard comm.isRoot else { return }
        let c = plan.model
        let probed = plan.probes.map { "\($0.layers)" }.joined(separator: " and ")
        var lines = [
            "plan: \(resolved.model) — \(plan.layers) layers, hidden \(c.hiddenSize), intermediate \(c.intermediateSize), vocabulary \(c.vocabSize)",
            "plan: method \(resolved.method.rawValue), precision \(resolved.weightPrecision.rawValue), \((try? resolved.computePrecision())?.kernelDescription ?? "?"), placement \(resolved.basePlacement(ranks: comm.size).rawValue), \(comm.size) rank(s) × \(runtime.threads) threads",
            "plan: \(plan.totalSteps) steps of \(resolved.batchSize) examples, micro-batches of \(plan.shape.batch) × \(plan.shape.length) tokens; recompute: \(plan.recompute)",
            "plan: measured on the model's first \(probed) layer(s) (\(plan.timedSteps) timed steps each, alternating, after a first step); per rank, for all \(plan.layers) layers:",
            "  frozen base            " + base + "  (" + mib(Int(plan.probes[0].base - plan.perLayer(\.base))) + " + \(plan.layers) × " + mib(Int(plan.perLayer(\.base))) + " per layer)",
            "  trainable + optimizer  " + trainable,
            "  activations            " + activations,
            "  scratch                " + scratch,
            "  process                " + process + "  (libraries, tokenizer, data, kernels' buffers)",
            "  peak RSS               " + perRankBytes(peaks) + "  (while loading: " + loading + ")",
        ]
        let node = Double(comm.localSize)
        let fits = peaks.enumerated().allSatisfy { $0.element * node <= available[$0.offset] }
        if let least = available.min(), least.isFinite {
            lines.append("  available              \(MemoryPreflight.gib(least))\(comm.localSize > 1 ? " for \(comm.localSize) ranks on a node" : "") — \(fits ? "fits" : "does NOT fit: lower micro_batch_size or max_length, recompute: true, method: qlora, or shard over more nodes")")
        }
        lines.append(String(format: "  step time              %.2f s (≈ %.0f tokens/s at the data's mean length; %.3f s + %d × %.3f s per layer)",
                            step, plan.tokensPerStep / step, plan.probes[0].stepSeconds - plan.perLayer(\.stepSeconds), plan.layers, plan.perLayer(\.stepSeconds)))
        lines.append("  load + \(plan.totalSteps) steps        " + String(format: "%.0f s + %.0f s", load, step * Double(plan.totalSteps))
                     + " (without evaluation and checkpoints)")
        for line in lines { runtime.log(line) }
    }
}
