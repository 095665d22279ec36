// `dtrain eval`: mean negative log-likelihood and perplexity of a text or JSONL file, split across ranks.
import ArgumentParser
import DTFormats
import DTKernels
import DTModel
import DTParallel
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
            let rows = batchSize * (sequences.map(\.count).max() ?? 1)
            let adapter = try modelOptions.adapter.map { try AdapterLoader.load($0, model: loaded.model, maxRows: rows) }
            let V = adapter?.virtualTokens ?? 0, longest = sequences.map(\.count).max() ?? 1
            try loaded.model.reservePositions(V + longest, for: V > 0 ? "the adapter \(modelOptions.adapter!)'s \(V) virtual tokens before sequences of \(longest) tokens" : "sequences of \(longest) tokens (--context)")
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

public enum EvalData {
    /// Token sequences of a .txt (windows of `context`) or .jsonl file; the second value counts truncations.
    public static func sequences(path: String, tokenizer: Tokenizer, context: Int) throws -> ([[Int32]], Int) {
        guard context >= 2 else { throw CommandError("--context must be at least 2") }
        if path.hasSuffix(".jsonl") {
            var out: [[Int32]] = []
            var truncated = 0
            for (line, object) in try TextFiles.readJSONL(path) {
                guard let text = object["text"] as? String else {
                    throw FormatError.line(path, line, "expected a string field \"text\"")
                }
                var ids = tokenizer.encode(text, addSpecial: true)
                if ids.count > context { ids = Array(ids.prefix(context)); truncated += 1 }
                if ids.count >= 2 { out.append(ids) }
            }
            guard !out.isEmpty else { throw FormatError(file: path, location: "", "no text with at least 2 tokens") }
            return (out, truncated)
        }
        let ids = tokenizer.encode(try TextFiles.readUTF8(path), addSpecial: true)
        guard ids.count >= 2 else { throw FormatError(file: path, location: "", "the text has fewer than 2 tokens") }
        var out: [[Int32]] = []
        var start = 0
        while start < ids.count - 1 {
            out.append(Array(ids[start..<min(start + context, ids.count)]))
            start += context
        }
        return (out.filter { $0.count >= 2 }, 0)
    }
}

public enum Evaluator {
    public struct Result { public var nllSum: Double; public var tokens: Int; public var meanNLL: Double { nllSum / Double(max(tokens, 1)) } }

    /// Each rank evaluates its batches of the sequences (RankSchedule); the sums are all-reduced, so every rank gets the total.
    public static func evaluate(model: LlamaModel, sequences: [[Int32]], comm: Communicator, batchSize: Int,
                                adapter: ModelAdapter? = nil, scoreFrom: Int = 0) -> Result {
        let schedule = RankSchedule(count: sequences.count, batch: batchSize, comm: comm)
        let V = adapter?.virtualTokens ?? 0
        let length = V + (sequences.map(\.count).max() ?? 1)
        let ws = ForwardWorkspace(model: model, batch: schedule.batch, length: length)
        var sums = [0.0, 0.0]
        let vocab = model.config.vocabSize
        for items in schedule.allPasses {
            let batch = items.map { sequences[$0] }
            ws.load(batch.isEmpty ? [[0]] : batch, reserved: V)
            model.forward(ws, adapter: adapter)
            for (b, seq) in batch.enumerated() {
                for t in min(scoreFrom, seq.count - 1)..<(seq.count - 1) {
                    let row = ws.logits.pointer + (b * ws.length + V + t) * vocab
                    sums[0] += Softmax.logSumExp(row, count: vocab) - Double(row[Int(seq[t + 1])])
                    sums[1] += 1
                }
            }
        }
        sums = comm.allReduceSum(sums)
        return Result(nllSum: sums[0], tokens: Int(sums[1]))
    }
}
