// The linear probe end to end: features extracted across ranks and cached (safetensors), the head trained on
// them, metrics reported, and `dtrain predict` writing JSONL predictions with per-label probabilities.
import ArgumentParser
import DTFormats
import DTModel
import DTParallel
import DTRuns
import DTTokenizer
import DTTraining
import Foundation

struct Predict: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Predict labels (or values) with a trained linear probe; writes JSONL.")

    @OptionGroup var runtimeOptions: RuntimeOptions
    @Option(help: "The probe directory (runs/NAME/final).") var adapter: String
    @Option(help: "JSONL with \"text\" (or \"messages\"); a \"label\" field is optional.") var data: String
    @Option(help: "Output JSONL (default: standard output).") var output: String?
    @Option(help: "Model (default: the probe's base model).") var model: String?

    func run() throws {
        let runtime = Runtime(threads: runtimeOptions.threads)
        runtime.run {
            let probe = try ProbeDirectory(adapter)
            let loaded = try ModelLoader.load(model ?? probe.baseModel, maxPositions: probe.maxLength)
            let head = try probe.head(for: loaded.model)
            let (labels, regression, options, maxLength) = (probe.labels, probe.regression, probe.options, probe.maxLength)
            let template = try ModelChatTemplate(tokenizer: loaded.tokenizer, named: probe.chatTemplate, source: loaded.path)
            let rows = try TextFiles.readJSONL(data)
            let texts = try rows.map { line, o -> [Int32] in   // read as the probe's training data was (ProbeDataset)
                let ids = loaded.tokenizer.encode(try ProbeDataset.text(of: o, file: data, line: line, template: template), addSpecial: true)
                guard !ids.isEmpty else { throw FormatError.line(data, line, "the text has no tokens") }
                return Array(ids.prefix(maxLength))
            }
            try loaded.model.reservePositions(texts.map(\.count).max() ?? 1, for: "the longest text")
            let features = FeatureExtractor.extract(model: loaded.model, sequences: texts, options: options, comm: runtime.comm,
                                                    batchSize: 8, padToken: loaded.tokenizer.padToken ?? 0)
            try ProbeRun.requireFinite(features, of: data, loaded: loaded)
            guard runtime.comm.isRoot else { return }
            let logits = head.logits(features)
            var out = ""
            for (i, (_, o)) in rows.enumerated() {
                var record: [String: Any] = [:]
                if let t = o["text"] { record["text"] = t }
                if regression {
                    record["value"] = Double(logits[i])
                } else {
                    let row = Array(logits[(i * labels.count)..<((i + 1) * labels.count)])
                    let m = row.max()!
                    let e = row.map { exp(Double($0 - m)) }
                    let total = e.reduce(0, +)
                    record["label"] = labels[row.indices.max { row[$0] < row[$1] }!]
                    record["probabilities"] = Dictionary(uniqueKeysWithValues: zip(labels, e.map { $0 / total }))
                }
                if let truth = o["label"] { record["true_label"] = truth }
                out += String(decoding: try JSONSerialization.data(withJSONObject: record, options: [.sortedKeys]), as: UTF8.self) + "\n"
            }
            if let output { try AtomicDirectory.writeFile(output, Data(out.utf8)) } else { Console.out(out, terminator: "") }
        }
    }
}
