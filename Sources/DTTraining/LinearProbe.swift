// The linear probe: the frozen model as a feature extractor (final hidden state at the last non-pad token, as
// HF LlamaForSequenceClassification, or the mean over tokens; optionally an intermediate layer) and a linear
// head score.weight [L, C] (+ bias) trained with AdamW on softmax cross-entropy (or MSE for regression).
import DTFormats
import DTKernels
import DTModel
import DTParallel
import DTTokenizer
import Foundation

public struct ProbeOptions: Sendable {
    public enum Pooling: String, Sendable, CaseIterable { case last, mean }
    public var layer: Int? = nil
    public var pooling: Pooling = .last
    public var bias = true
    public var epochs = 100
    public var batchSize = 0            // 0: full batch
    public var learningRate = 1e-2
    public var weightDecay = 0.0
    public var balancedClassWeights = false
    public var patience = 10            // epochs without validation improvement before stopping (0: never)
    public var seed: UInt64 = 42
    public init() {}
}

/// Labelled texts for the probe: string labels (classification) or numbers (regression).
public struct ProbeDataset {
    public var sequences: [[Int32]]
    public var classes: [Int]           // classification targets (index into labelNames)
    public var values: [Float]          // regression targets
    public var labelNames: [String]
    public var isRegression: Bool
    public var count: Int { sequences.count }
    public var longest: Int { sequences.map(\.count).max() ?? 0 }

    /// The text a probe reads from one JSONL object: its "text", or its "messages" rendered with the chat template.
    public static func text(of object: [String: Any], file: String, line: Int, template: ModelChatTemplate) throws -> String {
        if let t = object["text"] as? String { return t }
        guard let messages = object["messages"] as? [[String: Any]], !messages.isEmpty else {
            throw FormatError.line(file, line, "expected a string field \"text\" or a non-empty \"messages\" list")
        }
        let chat = try Dataset.messagesOf(messages, file: file, line: line)
        return try Dataset.required(template, file: file, line: line).renderText(chat, addGenerationPrompt: false)
    }

    /// Reads JSONL {"text" | "messages", "label"}; `labelNames` fixes the label set (from the training file).
    public static func load(path: String, tokenizer: Tokenizer, template: ModelChatTemplate, maxLength: Int,
                            labelNames known: [String]? = nil, regression: Bool? = nil) throws -> ProbeDataset {
        var sequences: [[Int32]] = [], rawLabels: [(Int, Any)] = []
        for (line, object) in try TextFiles.readJSONL(path) {
            let text = try Self.text(of: object, file: path, line: line, template: template)
            guard let label = object["label"] else { throw FormatError.line(path, line, "missing field \"label\"") }
            var ids = tokenizer.encode(text, addSpecial: true)
            if ids.count > maxLength { ids = Array(ids.prefix(maxLength)) }
            guard !ids.isEmpty else { throw FormatError.line(path, line, "the text has no tokens") }
            sequences.append(ids)
            rawLabels.append((line, label))
        }
        guard !sequences.isEmpty else { throw FormatError(file: path, location: "", "the dataset is empty") }
        let numeric = regression ?? rawLabels.allSatisfy { ($0.1 as? NSNumber) != nil && !($0.1 is String) }
        if numeric {
            let values = try rawLabels.map { line, l -> Float in
                guard let n = l as? NSNumber else { throw FormatError.line(path, line, "expected a numeric label (regression)") }
                return n.floatValue
            }
            return ProbeDataset(sequences: sequences, classes: [], values: values, labelNames: [], isRegression: true)
        }
        let names = try rawLabels.map { line, l -> String in
            guard let s = l as? String else { throw FormatError.line(path, line, "expected a string label like the other lines") }
            return s
        }
        let labelNames = known ?? Array(Set(names)).sorted()
        guard labelNames.count >= 2 else { throw FormatError(file: path, location: "", "need at least 2 distinct labels, found \(labelNames)") }
        let index = Dictionary(uniqueKeysWithValues: labelNames.enumerated().map { ($1, $0) })
        let classes = try zip(rawLabels, names).map { raw, name -> Int in
            guard let i = index[name] else { throw FormatError.line(path, raw.0, "label \"\(name)\" is not in the training labels \(labelNames)") }
            return i
        }
        return ProbeDataset(sequences: sequences, classes: classes, values: [], labelNames: labelNames, isRegression: false)
    }
}

public enum FeatureExtractor {
    /// Features (n, C) of every sequence. Batches of `batchSize` consecutive sequences go to ranks in turn
    /// (RankSchedule), so while every rank gets a full batch each batch has the same composition and padding on
    /// any number of ranks and the features are bit-identical to a 1-rank run; the others contribute zeros to one
    /// all-reduce.
    public static func extract(model: LlamaModel, sequences: [[Int32]], options: ProbeOptions, comm: Communicator,
                               batchSize: Int, padToken: Int32, progress: (Int) -> Void = { _ in }) -> [Float] {
        let C = model.config.hiddenSize
        var features = [Float](repeating: 0, count: sequences.count * C)
        let schedule = RankSchedule(count: sequences.count, batch: batchSize, comm: comm)
        let mine = schedule.allPasses
        let longest = mine.flatMap { $0.map { sequences[$0].count } }.max() ?? 1
        let ws = ForwardWorkspace(model: model, batch: schedule.batch, length: longest, withLogits: false)
        var done = 0
        for items in mine {
            guard !items.isEmpty else {
                ws.load([[padToken]], padToken: padToken)
                model.forwardLayers(ws, upToLayer: options.layer)
                continue
            }
            let chunk = Array(items)
            ws.load(chunk.map { sequences[$0] }, padToken: padToken)
            model.forwardLayers(ws, upToLayer: options.layer)
            // The final norm's output, or the raw residual stream after an intermediate layer.
            let hidden = options.layer == nil ? ws.finalNorm.pointer : ws.stream.pointer
            for (b, i) in chunk.enumerated() {
                let n = sequences[i].count, row = hidden + b * ws.length * C
                switch options.pooling {
                case .last:
                    for c in 0..<C { features[i * C + c] = row[(n - 1) * C + c] }
                case .mean:
                    for t in 0..<n { for c in 0..<C { features[i * C + c] += row[t * C + c] } }
                    for c in 0..<C { features[i * C + c] /= Float(n) }
                }
            }
            done += chunk.count
            progress(done)
        }
        features.withUnsafeMutableBufferPointer { comm.allReduceSum($0) }
        return features
    }
}
