// The `dtrain` command line: subcommands and the option groups they share. Commands parse flags and call
// library code; the library never parses flags.
import ArgumentParser
import DTKernels
import DTModel

public struct DTrain: ParsableCommand {
    public static let configuration = CommandConfiguration(
        commandName: "dtrain",
        abstract: "Parameter-efficient fine-tuning of Llama-family models on CPU machines and clusters.",
        subcommands: [Train.self, Plan.self, Eval.self, Generate.self, Predict.self, Export.self, Merge.self, QuantizeModel.self, Inspect.self, Tokenize.self, Bench.self])
    public init() {}
}

public struct ModelOptions: ParsableArguments {
    @Option(name: .long, help: "GGUF file or Hugging Face model directory (default: SmolLM2-135M-Instruct Q4_1).")
    public var model: String?

    @Option(name: .long, help: "Frozen weights in memory: fp32, as-stored (quantized blocks, dequantized per layer) or nf4.")
    public var precision: String = "fp32"

    @Option(name: .long, help: "Precision of the frozen-weight products: auto (bf16 where the CPU has AVX512_BF16 or AMX), bf16 or fp32.")
    public var compute: String = "auto"

    @Option(name: .long, help: "A PEFT adapter directory (LoRA) to apply, e.g. runs/NAME/final.")
    public var adapter: String?

    public init() {}

    public func weightPrecision() throws -> WeightPrecision {
        guard let p = WeightPrecision(rawValue: precision) else {
            throw ValidationError("--precision must be fp32, as-stored or nf4, not '\(precision)'")
        }
        return p
    }

    public func computePrecision() throws -> ComputePrecision {
        guard let request = ComputeRequest(rawValue: compute) else {
            throw ValidationError("--compute must be auto, bf16 or fp32, not '\(compute)'")
        }
        return try ComputePrecision.resolve(request)
    }
}

public struct RuntimeOptions: ParsableArguments {
    @Option(name: .long, help: "BLAS threads per rank (default: cores on this node / ranks on this node).")
    public var threads: Int?
    public init() {}

    public func validate() throws {
        if let threads, threads < 1 || threads > 4096 { throw ValidationError("--threads: expected an integer in [1, 4096], found \(threads)") }
    }
}
