// `dtrain plan`: the same keys and flags as `dtrain train`; prints per-rank memory and the expected step time,
// measured on a probe of the model's first layers (DTRuns/PlanRun.swift), and writes nothing.
import ArgumentParser
import DTRuns
import DTTraining
import Foundation

public struct Plan: ParsableCommand {
    public static let configuration = CommandConfiguration(
        abstract: "Per-rank memory (base, trainable, activations, scratch, peak RSS) and step time of a training run, measured on the model's first layers.",
        discussion: "Takes the keys of `dtrain train` (YAML with --config, or flags) and runs under the same mpirun/srun as the run it plans. It loads the first one and two layers, runs a few steps on each and extrapolates to the whole model; nothing is written.")

    @Option(help: "Timed steps per probe, after one warm-up step.") var probeSteps: Int = 2
    @OptionGroup var keys: TrainKeys

    public init() {}

    public func run() throws {
        let resolved: TrainConfig
        do {
            guard (1...1000).contains(probeSteps) else { throw ValidationError("--probe-steps: expected 1 to 1000, found \(probeSteps)") }
            let c = try keys.resolvedConfig()
            guard !c.data.isEmpty else { throw ValidationError("no training data: set data in the config or pass --data (the probe trains on it)") }
            resolved = c
        } catch {
            Console.error("error: \(error)")
            throw ExitCode(1)
        }
        let runtime = Runtime(threads: resolved.threads > 0 ? resolved.threads : nil)
        runtime.run { try PlanRun.execute(resolved, runtime: runtime, probeSteps: probeSteps) }
    }
}
