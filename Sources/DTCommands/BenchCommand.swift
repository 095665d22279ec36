// `dtrain bench`: throughput of the real model next to an SGEMM measured in the same run, so the figures
// say how close dtrain gets to the machine's BLAS peak.
import ArgumentParser
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTRuns
import DTTraining
import Foundation

struct Bench: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Measure throughput: forward (prefill) tokens/s and SGEMM GFLOP/s.")

    @Argument(help: "What to measure: forward, train (LoRA, all seven targets), prompt (prompt tuning, 20 virtual tokens), features (probe feature extraction), step (one data-parallel LoRA step on the ranks of this job), scaling (runs `step` as 1 rank × 2 threads and 2 ranks × 1 thread) or qlora (LoRA, QLoRA as stored and QLoRA NF4 training steps interleaved in one run).")
    var what: String = "forward"
    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var runtimeOptions: RuntimeOptions
    @Option(help: "Sequences per batch.") var batch = 4
    @Option(help: "Tokens per sequence.") var length = 256
    @Option(help: "Timed iterations after one warm-up; the median is reported.") var iterations = 5
    @Flag(help: "Also print the wall time of each stage (projections, attention, norms, …) of the timed iterations.")
    var profile = false
    @Flag(help: "train: DoRA (a magnitude per output feature) instead of plain LoRA, same rank and targets.")
    var useDora = false

    func validate() throws {
        guard batch >= 1 else { throw ValidationError("--batch: expected an integer ≥ 1, found \(batch)") }
        guard length >= 2, length <= 1 << 20 else { throw ValidationError("--length: expected an integer in [2, \(1 << 20)], found \(length)") }
        guard iterations >= 1 else { throw ValidationError("--iterations: expected an integer ≥ 1, found \(iterations)") }
        guard !useDora || what == "train" else { throw ValidationError("--use-dora applies to `dtrain bench train`, not to '\(what)'") }
    }

    func run() throws {
        let runtime = Runtime(threads: runtimeOptions.threads)
        runtime.run {
            guard ["forward", "train", "prompt", "features", "step", "scaling", "qlora"].contains(what) else {
                throw CommandError("unknown benchmark '\(what)' (expected: forward, train, prompt, features, step, scaling, qlora)")
            }
            if what == "qlora" {
                return try Benchmarks.qlora(model: modelOptions.model ?? DefaultModel.path, compute: try modelOptions.computePrecision(),
                                            batch: batch, length: length, iterations: iterations, root: runtime.comm.isRoot)
            }
            if what == "scaling" { return try Benchmarks.scaling(model: modelOptions.model, batch: batch, length: length, iterations: iterations) }
            let loaded = try ModelLoader.load(modelOptions.model, precision: try modelOptions.weightPrecision(), compute: try modelOptions.computePrecision(), maxPositions: length + 32)
            let model = loaded.model
            try model.reservePositions(length + (what == "prompt" ? 20 : 0), for: "--length \(length)")
            Benchmarks.profile = profile
            let report: Benchmarks.Report
            switch what {
            case "step":
                let r = try Benchmarks.dataParallelStep(loaded: loaded, comm: runtime.comm, batch: batch, length: length, iterations: iterations)
                if runtime.comm.isRoot {
                    Console.out(String(format: "step  %d rank(s) × %d thread(s): %.3f s/step, all-reduce %.3f ms (%.2f%%), %.1f tokens/s, %@",
                                       runtime.comm.size, runtime.threads, r.seconds, 1000 * r.communication, 100 * r.communication / r.seconds,
                                       Double(batch * length) / r.seconds, model.compute.kernelTag))
                }
                return
            case "forward": report = Benchmarks.forward(model: model, batch: batch, length: length, iterations: iterations)
            case "features": report = Benchmarks.features(model: model, batch: batch, length: length, iterations: iterations)
            case "prompt": report = try Benchmarks.train(loaded: loaded, method: .prompt, batch: batch, length: length, iterations: iterations)
            default: report = try Benchmarks.train(loaded: loaded, method: .lora, useDoRA: useDora, batch: batch, length: length, iterations: iterations)
            }
            let gemm = Benchmarks.sgemm(m: batch * length, n: loaded.model.config.intermediateSize, k: loaded.model.config.hiddenSize)
            runtime.log("BLAS: OpenBLAS core \(BLASCore.name), \(runtime.threads) threads per rank, \(runtime.comm.size) ranks")
            if runtime.comm.isRoot {
                Console.out(String(format: "%@  batch %d × %d tokens: %.1f tokens/s, %.2f s/batch (median of %d, best %.2f), %.1f GFLOP/s, peak RSS %@, %@",
                                   ["forward": "forward", "features": "probe features", "prompt": "train (prompt tuning, 20 virtual tokens)",
                                    "train": useDora ? "train (DoRA r=8, 7 targets)" : "train (LoRA r=8, 7 targets)"][what]!, batch, length,
                                   report.tokensPerSecond, report.seconds, max(1, iterations), report.best, report.gflops,
                                   mib(Int(MemoryStats.peakResidentBytes())), model.compute.kernelTag))
                Console.out(String(format: "sgemm    %d × %d × %d: %.1f GFLOP/s (same run)", batch * length,
                                   loaded.model.config.intermediateSize, loaded.model.config.hiddenSize, gemm))
                if model.compute == .bf16 {
                    let c = model.config
                    Console.out(String(format: "bf16 gemm %d × %d × %d: %.1f GFLOP/s; 2048 × 2048 × 2048: %.1f GFLOP/s (same run, %@)",
                                       batch * length, c.intermediateSize, c.hiddenSize,
                                       Benchmarks.bf16gemm(m: batch * length, n: c.intermediateSize, k: c.hiddenSize),
                                       Benchmarks.bf16gemm(m: 2048, n: 2048, k: 2048), model.compute.kernelTag))
                }
                if profile { Benchmarks.printProfile(iterations: iterations, total: report.seconds) }
            }
        }
    }
}

public enum Benchmarks {
    /// `seconds` is the median of the timed iterations (robust to a shared machine's slow moments), `best` the fastest.
    public struct Report {
        public var seconds: Double, best: Double, tokensPerSecond: Double, gflops: Double
        init(times: [Double], tokens: Int, flops: Double) {
            let sorted = times.sorted()
            seconds = sorted[sorted.count / 2]
            best = sorted[0]
            tokensPerSecond = Double(tokens) / seconds
            gflops = flops / seconds / 1e9
        }
    }
    /// Profile the timed iterations (not the warm-up).
    nonisolated(unsafe) static var profile = false

    /// Wall time of each of `iterations` runs of `body` (profiled when asked).
    static func time(_ iterations: Int, _ body: () -> Void) -> [Double] {
        Profile.reset()
        Profile.enabled = profile
        defer { Profile.enabled = false }
        return (0..<max(1, iterations)).map { _ in
            let start = Date()
            body()
            return Date().timeIntervalSince(start)
        }
    }

    static func printProfile(iterations: Int, total: Double) {
        let stages = Profile.report()
        let covered = stages.reduce(0) { $0 + $1.seconds } / Double(max(1, iterations))
        func pad(_ s: String) -> String { s.padding(toLength: 22, withPad: " ", startingAt: 0) }
        Console.out(pad("stage") + "   s/iter   share  calls/iter")
        for s in stages {
            let perIteration = s.seconds / Double(max(1, iterations))
            Console.out(pad(s.stage) + String(format: " %8.4f %6.1f%% %6d", perIteration, 100 * perIteration / total,
                                               s.calls / max(1, iterations)))
        }
        Console.out(pad("(outside stages)") + String(format: " %8.4f %6.1f%%", total - covered, 100 * (total - covered) / total))
    }

    /// Matrix-product FLOPs of one forward over (B, T): 2·N·(weights) plus attention scores and mixing.
    public static func forwardFLOPs(_ c: LlamaConfig, batch: Int, length: Int) -> Double {
        let n = Double(batch * length)
        let perToken = Double(c.hiddenSize * (c.heads + 2 * c.kvHeads) * c.headDim + c.heads * c.headDim * c.hiddenSize
            + 3 * c.hiddenSize * c.intermediateSize) * Double(c.layers) + Double(c.vocabSize * c.hiddenSize)
        let attention = 2.0 * 2.0 * Double(batch) * Double(length * length) * Double(c.heads * c.headDim) * Double(c.layers)
        return 2 * n * perToken + attention
    }

    public static func forward(model: LlamaModel, batch: Int, length: Int, iterations: Int) -> Report {
        let ws = ForwardWorkspace(model: model, batch: batch, length: length)
        var rng = SplitMix64(seed: 1)
        let V = UInt64(model.config.vocabSize)
        ws.load((0..<batch).map { _ in (0..<length).map { _ in Int32(rng.next() % V) } })
        model.forward(ws)
        let times = time(iterations) { model.forward(ws) }
        return Report(times: times, tokens: batch * length, flops: forwardFLOPs(model.config, batch: batch, length: length))
    }

    /// Matrix-product FLOPs of one LoRA training step: forward, plus backward products for dx through every
    /// frozen weight and the LM head (no weight gradients), attention backward (4 products) and LoRA.
    public static func trainFLOPs(_ c: LlamaConfig, batch: Int, length: Int, rank: Int) -> Double {
        let n = Double(batch * length)
        let weights = Double(c.hiddenSize * (c.heads + 2 * c.kvHeads) * c.headDim + c.heads * c.headDim * c.hiddenSize
            + 3 * c.hiddenSize * c.intermediateSize) * Double(c.layers)
        let head = Double(c.vocabSize * c.hiddenSize)
        let attention = 2.0 * 2.0 * Double(batch) * Double(length * length) * Double(c.heads * c.headDim) * Double(c.layers)
        // Σ (in + out) over the seven targets: q, o: C + H·D; k, v: C + K·D; gate, up, down: C + I.
        let (C, HD, KD, I) = (c.hiddenSize, c.heads * c.headDim, c.kvHeads * c.headDim, c.intermediateSize)
        let loraDims = Double(2 * (C + HD) + 2 * (C + KD) + 3 * (C + I))
        let lora = 2 * n * Double(rank) * loraDims * Double(c.layers) * 3
        return 2 * n * (weights + head) * 2 + attention * 3 + lora
    }

    /// Feature extraction for the probe: the layers and final norm, no LM head.
    public static func features(model: LlamaModel, batch: Int, length: Int, iterations: Int) -> Report {
        let ws = ForwardWorkspace(model: model, batch: batch, length: length, withLogits: false)
        var rng = SplitMix64(seed: 1)
        ws.load((0..<batch).map { _ in (0..<length).map { _ in Int32(rng.next() % UInt64(model.config.vocabSize)) } })
        model.forwardLayers(ws)
        let times = time(iterations) { model.forwardLayers(ws) }
        let c = model.config
        let flops = forwardFLOPs(c, batch: batch, length: length) - 2 * Double(batch * length * c.vocabSize * c.hiddenSize)
        return Report(times: times, tokens: batch * length, flops: flops)
    }

    /// The real training step (`Trainer.step`: forward, loss, backward, all-reduce, clipping, AdamW) of `method`
    /// (LoRA r = 8 on all seven targets, or prompt tuning with 20 virtual tokens) on `batch` random sequences of
    /// `length` tokens per rank; tokens/s counts the real tokens.
    public static func train(loaded: LoadedModel, method: TrainMethod, useDoRA: Bool = false, batch: Int, length: Int,
                             iterations: Int, comm: Communicator = WorldOfOne()) throws -> Report {
        let trainer = try syntheticTrainer(loaded: loaded, method: method, useDoRA: useDoRA, batch: batch, length: length, comm: comm)
        _ = trainer.step(0)
        var s = 0
        let times = time(iterations) { s += 1; _ = trainer.step(s) }
        let virtual = trainer.adapter.virtualTokens
        let flops = trainFLOPs(loaded.model.config, batch: batch, length: length + virtual, rank: method.isLoRA ? 8 : 0)
        return Report(times: times, tokens: batch * length, flops: flops)
    }

    /// A Trainer over `batch` × ranks random sequences of `length` tokens (every position but the last a target):
    /// one step is one micro-batch of `batch` sequences on every rank. The adapter is made as `dtrain train` makes it.
    static func syntheticTrainer(loaded: LoadedModel, method: TrainMethod, useDoRA: Bool = false, batch: Int, length: Int,
                                 comm: Communicator) throws -> Trainer {
        var config = TrainConfig()
        config.method = method; config.useDoRA = useDoRA; config.numVirtualTokens = 20
        config.batchSize = batch * comm.size; config.microBatchSize = batch; config.maxLength = length
        config.maxSteps = 1 << 30; config.learningRate = 1e-4; config.schedule = .constant
        var rng = SplitMix64(seed: 1)
        let vocab = UInt64(loaded.model.config.vocabSize)
        let examples = (0..<config.batchSize).map { _ -> TrainingExample in
            let tokens = (0..<length).map { _ in Int32(rng.next() % vocab) }
            return TrainingExample(tokens: tokens, labels: Array(tokens.dropFirst()) + [ignoreLabel], line: 0)
        }
        let data = Dataset(path: "(random tokens)", examples: examples, truncated: 0)
        let adapter = try makeAdapter(config, loaded: loaded)
        try loaded.model.reservePositions(length + adapter.virtualTokens, for: "--length \(length)")
        return Trainer(config: config, comm: comm, model: loaded.model, tokenizer: loaded.tokenizer, train: data, valid: nil, adapter: adapter)
    }

    /// LoRA on the fp32 base, QLoRA over the stored blocks and QLoRA over NF4 + DQ: one training step of each
    /// in turn, `iterations` rounds, so all three see the same machine load. Prints medians and ratios to LoRA.
    public static func qlora(model path: String, compute: ComputePrecision, batch: Int, length: Int, iterations: Int, root: Bool) throws {
        let base = compute == .bf16 ? "LoRA, bf16 base" : "LoRA, fp32 base"
        let variants: [(String, WeightPrecision)] = [(base, .fp32), ("QLoRA, base as stored", .asStored), ("QLoRA, NF4 + DQ base", .nf4)]
        let loaded = try variants.map { try ModelLoader.load(path, precision: $0.1, compute: compute, maxPositions: length + 32) }
        let models = loaded.map(\.model)
        // Each model has its own trainer and workspace: the product scratch follows the model's storage.
        let trainers = try loaded.map { try syntheticTrainer(loaded: $0, method: .lora, batch: batch, length: length, comm: WorldOfOne()) }
        var times = [[Double]](repeating: [], count: variants.count)
        for round in 0...max(1, iterations) {
            for (i, trainer) in trainers.enumerated() {
                let start = Date()
                _ = trainer.step(round)
                if round > 0 { times[i].append(Date().timeIntervalSince(start)) }   // round 0 warms up
            }
        }
        guard root else { return }
        let medians = times.map { $0.sorted()[$0.count / 2] }
        Console.out(String(format: "train step, batch %d × %d, LoRA r=8 on 7 targets, %d interleaved rounds (median), %@:", batch, length,
                           max(1, iterations), compute.kernelTag))
        for (i, (name, _)) in variants.enumerated() {
            Console.out(String(format: "  %@ %6.2f s/step  %5.2f× LoRA   base %@", name.padding(toLength: 24, withPad: " ", startingAt: 0),
                               medians[i], medians[i] / medians[0], mib(models[i].baseBytes)))
        }
    }

    /// `Trainer.step` on every rank of the job (one micro-batch of `batch` sequences each); returns seconds per
    /// step and seconds in the fused all-reduce (means over ranks and steps).
    public static func dataParallelStep(loaded: LoadedModel, comm: Communicator, batch: Int, length: Int,
                                        iterations: Int) throws -> (seconds: Double, communication: Double) {
        let trainer = try syntheticTrainer(loaded: loaded, method: .lora, batch: batch, length: length, comm: comm)
        var total = 0.0, communication = 0.0
        for i in 0...max(1, iterations) {
            comm.barrier()
            Profile.reset()
            Profile.enabled = true   // for the all-reduce stage; the other stages cost one clock read each
            let start = Date()
            _ = trainer.step(i)
            let seconds = Date().timeIntervalSince(start)
            Profile.enabled = false
            if i > 0 { total += seconds; communication += Profile.report().first { $0.stage == "all-reduce" }?.seconds ?? 0 }   // 0 warms up
        }
        var sums = [total, communication]
        sums = comm.allReduceSum(sums)   // mean over ranks
        let n = Double(max(1, iterations) * comm.size)
        return (sums[0] / n, sums[1] / n)
    }

    /// Runs `dtrain bench step` under mpirun as 1 rank × 2 threads and 2 ranks × 1 thread and prints both.
    public static func scaling(model: String?, batch: Int, length: Int, iterations: Int) throws {
        let cores = ProcessInfo.processInfo.activeProcessorCount
        for ranks in [1, 2] {
            let p = Process()
            p.executableURL = URL(fileURLWithPath: "/usr/bin/env")
            p.arguments = ["mpirun", "-np", "\(ranks)", "--bind-to", "none", "--oversubscribe", CommandLine.arguments[0], "bench", "step",
                           "--threads", "\(max(1, cores / ranks))", "--batch", "\(batch)", "--length", "\(length)",
                           "--iterations", "\(iterations)"] + (model.map { ["--model", $0] } ?? [])
            var env = ProcessInfo.processInfo.environment
            env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
            p.environment = env
            try p.run()
            p.waitUntilExit()
            guard p.terminationStatus == 0 else { throw CommandError("mpirun -np \(ranks) dtrain bench step failed") }
        }
    }

    /// GFLOP/s of the bf16 product C (m, n) = A (m, k) · Bᵀ (fp32 C) with the linear-layer layout.
    public static func bf16gemm(m: Int, n: Int, k: Int, iterations: Int = 5) -> Double {
        let a = BF16Buffer(count: m * k), b = BF16Buffer(count: n * k), c = FloatBuffer(count: m * n)
        for i in 0..<a.count { a.pointer[i] = 0x3C00 + UInt16(i % 7) }
        for i in 0..<b.count { b.pointer[i] = 0x3C00 + UInt16(i % 5) }
        let run = { BF16.gemm(.noTrans, .trans, m: m, n: n, k: k, a: a.pointer, lda: k, b: b.pointer, ldb: k, accumulate: false, c: c.pointer, ldc: n) }
        run()
        let start = Date()
        for _ in 0..<iterations { run() }
        let seconds = Date().timeIntervalSince(start) / Double(iterations)
        return 2 * Double(m) * Double(n) * Double(k) / seconds / 1e9
    }

    /// GFLOP/s of C (m, n) = A (m, k) · Bᵀ with the linear-layer layout.
    public static func sgemm(m: Int, n: Int, k: Int, iterations: Int = 5) -> Double {
        let a = FloatBuffer(count: m * k), b = FloatBuffer(count: n * k), c = FloatBuffer(count: m * n)
        for i in 0..<a.count { a[i] = Float(i % 7) * 0.01 }
        for i in 0..<b.count { b[i] = Float(i % 5) * 0.01 }
        BLAS.linear(a.pointer, b.pointer, c.pointer, rows: m, inFeatures: k, outFeatures: n)
        let start = Date()
        for _ in 0..<iterations { BLAS.linear(a.pointer, b.pointer, c.pointer, rows: m, inFeatures: k, outFeatures: n) }
        let seconds = Date().timeIntervalSince(start) / Double(iterations)
        return 2 * Double(m) * Double(n) * Double(k) / seconds / 1e9
    }
}
