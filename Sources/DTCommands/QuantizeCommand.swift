// `dtrain quantize`: the NF4 + double quantization base written once as a bitsandbytes 4-bit HF directory, so
// QLoRA runs (and transformers' load_in_4bit users) load it without quantizing again.
import ArgumentParser
import DTFormats
import DTKernels
import DTModel
import DTTraining
import DTRuns
import Foundation

struct QuantizeModel: ParsableCommand {
    static let configuration = CommandConfiguration(
        commandName: "quantize",
        abstract: "Write a model's projections in NF4 + double quantization as a bitsandbytes 4-bit Hugging Face directory.")

    @Option(help: "GGUF file or Hugging Face model directory (default: the default model).")
    var model: String?
    @Option(help: "Quantization: nf4 (bitsandbytes NF4, blocksize 64, double quantization).")
    var quant = "nf4"
    @Option(name: [.customShort("o"), .long], help: "Output directory.")
    var output: String
    @Option(help: "Largest safetensors shard in bytes (suffixes KB, MB, GB).")
    var maxShardSize = "5GB"
    @Flag(help: "Replace an existing output (only after the new one is complete).")
    var force = false

    func run() throws {
        signal(SIGXFSZ, SIG_IGN)
        guard quant == "nf4" else { throw ValidationError("--quant must be nf4, not '\(quant)'") }
        guard let shardBytes = Merge.bytes(maxShardSize), shardBytes > 0 else {
            throw ValidationError("--max-shard-size must be a size like 500MB or 5GB, not '\(maxShardSize)'")
        }
        do {
            if !force && FileManager.default.fileExists(atPath: output) {
                throw CommandError("\(output) already exists (pass --force to replace it)")
            }
            let started = Date()
            BLAS.configureThreads(ProcessInfo.processInfo.activeProcessorCount)   // quantization runs on every core
            let base = try ModelSource(path: model ?? DefaultModel.path)
            let report = try NF4Export.toHF(base: base, dir: output, overwrite: force, maxShardBytes: shardBytes)
            Console.out(String(format: "wrote %@: %d projections in NF4 + double quantization, %d tensors kept, %.1f s",
                               output, report.quantized, report.kept, Date().timeIntervalSince(started)))
        } catch {
            Console.error("error: \(error)")
            throw ExitCode(1)
        }
    }
}
