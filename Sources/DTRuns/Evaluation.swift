// Mean NLL of token sequences across ranks (`dtrain eval`), and the sequences of a .txt or JSONL file.
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTTokenizer
import DTTraining
import Foundation

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
        let virtual = adapter?.virtualTokens ?? 0
        let length = virtual + (sequences.map(\.count).max() ?? 1)
        let ws = ForwardWorkspace(model: model, batch: schedule.batch, length: length)
        var sums = [0.0, 0.0]
        let vocab = model.config.vocabSize
        for items in schedule.allPasses {
            let batch = items.map { sequences[$0] }
            ws.load(batch.isEmpty ? [[0]] : batch, reserved: virtual)
            model.forward(ws, adapter: adapter)
            for (b, seq) in batch.enumerated() {
                for t in min(scoreFrom, seq.count - 1)..<(seq.count - 1) {
                    let row = ws.logits.pointer + (b * ws.length + virtual + t) * vocab
                    sums[0] += Softmax.logSumExp(row, count: vocab) - Double(row[Int(seq[t + 1])])
                    sums[1] += 1
                }
            }
        }
        sums = comm.allReduceSum(sums)
        return Result(nllSum: sums[0], tokens: Int(sums[1]))
    }
}
