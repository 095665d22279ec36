// `dtrain eval`: mean negative log-likelihood and perplexity of a text or JSONL file, split across ranks.
import ArgumentParser
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTRuns
import DTTokenizer
import DTTraining
import Foundation

struct Eval: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Mean NLL and perplexity of a text (.txt) or JSONL ({\"text\"}) file.")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var runtimeOptions: RuntimeOptions
    @Option(help: "A .txt file (cut into windows of --context tokens) or .jsonl with a \"text\" field per line.")
    var data: String
    @Option(help: "Tokens per sequence (longer JSONL texts are truncated, and counted).")
    var context = 256
    @Option(help: "Sequences per forward pass on each rank.")
    var batchSize = 4
    @Option(help: "Count only the predictions made at positions ≥ this within each sequence (llama-perplexity scores from context/2).")
    var scoreFrom = 0
    @Flag(help: "Print the result as one JSON line.")
    var json = false

    func validate() throws {
        guard batchSize >= 1 else { throw ValidationError("--batch-size: expected an integer ≥ 1, found \(batchSize)") }
        guard context >= 2 else { throw ValidationError("--context: expected an integer ≥ 2, found \(context)") }
    }

    func run() throws {
        let runtime = Runtime(threads: runtimeOptions.threads)
        runtime.run {
            let loaded = try ModelLoader.load(modelOptions.model, precision: try modelOptions.weightPrecision(), compute: try modelOptions.computePrecision(), maxPositions: context,
                                              report: { runtime.log($0) })
            runtime.log("compute: \(loaded.model.compute.kernelDescription)")
            guard scoreFrom >= 0, scoreFrom < context - 1 else {
                throw CommandError("--score-from must be in 0..<\(context - 1) (below --context - 1), not \(scoreFrom)")
            }
            let (sequences, truncated) = try EvalData.sequences(path: data, tokenizer: loaded.tokenizer, context: context)
            let adapter = try modelOptions.adapter.map { try AdapterLoader.load($0, model: loaded.model) }
            let virtual = adapter?.virtualTokens ?? 0, longest = sequences.map(\.count).max() ?? 1
            try loaded.model.reservePositions(virtual + longest, for: virtual > 0 ? "the adapter \(modelOptions.adapter!)'s \(virtual) virtual tokens before sequences of \(longest) tokens" : "sequences of \(longest) tokens (--context)")
            let result = Evaluator.evaluate(model: loaded.model, sequences: sequences, comm: runtime.comm, batchSize: batchSize, adapter: adapter,
                                             scoreFrom: scoreFrom)
            guard result.meanNLL.isFinite else {
                throw CommandError("the mean NLL of \(data) is \(result.meanNLL): the model\(adapter == nil ? "" : " or the adapter") produces non-finite logits (a NaN or infinite weight?)")
            }
            guard runtime.comm.isRoot else { return }
            if json {
                Console.out(String(format: "{\"mean_nll\": %.8f, \"perplexity\": %.6f, \"tokens\": %d, \"sequences\": %d, \"truncated\": %d}",
                                   result.meanNLL, exp(result.meanNLL), result.tokens, sequences.count, truncated))
            } else {
                if truncated > 0 { Console.error("note: \(truncated) texts were longer than \(context) tokens and were truncated") }
                Console.out(String(format: "mean NLL %.6f  perplexity %.4f  (%d predicted tokens, %d sequences, %d ranks)",
                                   result.meanNLL, exp(result.meanNLL), result.tokens, sequences.count, runtime.comm.size))
            }
        }
    }
}

