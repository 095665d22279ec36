// A linear-probe run: features (cached), the head, metrics, the probe directory; and reading a probe directory.
import DTFormats
import DTModel
import DTParallel
import DTTokenizer
import DTTraining
import Foundation

public enum ProbeRun {
    /// Features of `data`, from the cache file when its key matches, else extracted (and cached by rank 0).
    static func features(_ data: ProbeDataset, dataPath: String, cache: String, config: TrainConfig, loaded: LoadedModel,
                         runtime: Runtime) throws -> [Float] {
        let size = (try? FileManager.default.attributesOfItem(atPath: loaded.path)[.size] as? Int) ?? 0
        var hasher = Hasher64()
        for s in data.sequences { hasher.add(s.count); for t in s { hasher.add(Int(t)) } }
        let key = "model=\(loaded.path) size=\(size) layer=\(config.probeLayer) pooling=\(config.probePooling.rawValue) tokens=\(hasher.value)"
        if let file = try? SafetensorsFile(path: cache), file.metadata["key"] == key, let f = try? file.floats("features"),
           f.count == data.count * loaded.model.config.hiddenSize {
            runtime.log("features: reusing the cache \(cache)")
            return f
        }
        let started = Date()
        let tokens = data.sequences.reduce(0) { $0 + $1.count }
        let f = FeatureExtractor.extract(model: loaded.model, sequences: data.sequences, options: config.probeOptions, comm: runtime.comm,
                                         batchSize: config.microBatchSize, padToken: loaded.tokenizer.padToken ?? 0)
        try requireFinite(f, of: dataPath, loaded: loaded)
        let seconds = Date().timeIntervalSince(started)
        runtime.log(String(format: "features: %d texts of %@ extracted in %.1f s (%.0f tokens/s over %d ranks)", data.count,
                           dataPath, seconds, Double(tokens) / seconds, runtime.comm.size))
        if runtime.comm.isRoot {
            let bytes = SafetensorsWriter.encode([.init(name: "features", shape: [data.count, loaded.model.config.hiddenSize], values: f)],
                                                 metadata: ["key": key, "format": "dtrain-features"])
            try AtomicDirectory.writeFile(cache, bytes)
        }
        return f
    }

    /// Refuses NaN or infinite features (a non-finite weight in the model) instead of training or predicting on them.
    public static func requireFinite(_ features: [Float], of data: String, loaded: LoadedModel) throws {
        if let i = features.firstIndex(where: { !$0.isFinite }) {
            throw CommandError("\(data): the features of text \(i / loaded.model.config.hiddenSize + 1) are not finite (\(features[i])): \(loaded.path) produces non-finite hidden states (a NaN or infinite weight?)")
        }
    }

    public static func execute(_ configIn: TrainConfig, runtime: Runtime) throws {
        var config = configIn
        if config.model.isEmpty { config.model = DefaultModel.path }
        guard config.resume == .never else {
            throw CommandError("resume applies to lora, qlora and prompt: a probe run trains its head again (--overwrite true replaces a previous probe run and reuses its feature caches)")
        }
        try Checkpoint.checkOutput(config.output, resume: config.resume, overwrite: config.overwrite)
        let loaded = try ModelLoader.load(config.model, precision: config.weightPrecision, compute: try config.computePrecision(),
                                          maxPositions: config.maxLength, report: { runtime.log($0) })
        if config.probeLayer > loaded.model.config.layers {
            throw CommandError("probe_layer \(config.probeLayer) exceeds the model's \(loaded.model.config.layers) layers (expected -1 … \(loaded.model.config.layers))")
        }
        let template = try ModelChatTemplate(tokenizer: loaded.tokenizer, named: config.chatTemplate?.rawValue, source: loaded.path)
        let train = try ProbeDataset.load(path: config.data, tokenizer: loaded.tokenizer, template: template, maxLength: config.maxLength)
        var valid: ProbeDataset?
        if !config.validData.isEmpty {
            valid = try ProbeDataset.load(path: config.validData, tokenizer: loaded.tokenizer, template: template, maxLength: config.maxLength,
                                          labelNames: train.isRegression ? nil : train.labelNames, regression: train.isRegression)
        }
        let longest = max(train.longest, valid?.longest ?? 0)
        try loaded.model.reservePositions(longest, for: "the longest text (\(longest) tokens; lower max_length)")
        if runtime.comm.isRoot {
            try AtomicDirectory.makeDirectory(config.output)
            if config.overwrite { try Checkpoint.clearPreviousRun(config.output) }
            try AtomicDirectory.writeFile((config.output as NSString).appendingPathComponent("config.yaml"), Data(config.yaml.utf8))
            runtime.log("dtrain train (linear probe) — resolved configuration:\n" + config.yaml.split(separator: "\n").map { "  " + $0 }.joined(separator: "\n"))
            let majority = train.isRegression ? 0 : Double((0..<train.labelNames.count).map { c in train.classes.filter { $0 == c }.count }.max()!) / Double(train.count)
            runtime.log("data: \(train.count) training texts\(valid.map { ", \($0.count) validation" } ?? ""); " +
                        (train.isRegression ? "regression" : "\(train.labelNames.count) labels \(train.labelNames), majority share \(String(format: "%.1f%%", 100 * majority))"))
        }
        let cacheDir = config.output
        let trainFeatures = try features(train, dataPath: config.data, cache: cacheDir + "/features-train.safetensors", config: config, loaded: loaded, runtime: runtime)
        let validFeatures = try valid.map { try features($0, dataPath: config.validData, cache: cacheDir + "/features-valid.safetensors", config: config, loaded: loaded, runtime: runtime) }
        let C = loaded.model.config.hiddenSize
        let head = ProbeHead(outputs: train.isRegression ? 1 : train.labelNames.count, channels: C, options: config.probeOptions)
        let epochs = head.train(features: trainFeatures, classes: train.classes, values: train.values,
                                valid: valid.map { (validFeatures!, $0.classes, $0.values) }) { epoch, loss, validLoss in
            if epoch % max(1, config.logEvery * 10) == 0 {
                runtime.log(String(format: "epoch %d | train loss %.4f%@", epoch, loss, validLoss.map { String(format: " | valid loss %.4f", $0) } ?? ""))
            }
        }
        runtime.log("head trained for \(epochs) epochs\(valid != nil ? " (best validation epoch kept)" : "")")
        var report: [String: Any] = [:]
        for (name, data, f) in [("train", train, trainFeatures)] + (valid.map { [("valid", $0, validFeatures!)] } ?? []) {
            let m = head.evaluate(features: f, classes: data.classes, values: data.values)
            report[name] = data.isRegression ? ["rmse": m.rmse, "r2": m.r2] : ["accuracy": m.accuracy, "macro_f1": m.macroF1, "confusion": m.confusion]
            if data.isRegression {
                runtime.log(String(format: "%@: RMSE %.4f, R² %.4f", name, m.rmse, m.r2))
            } else {
                runtime.log(String(format: "%@: accuracy %.2f%%, macro-F1 %.4f", name, 100 * m.accuracy, m.macroF1))
                if name == "valid" {
                    runtime.log("confusion matrix (rows: true, columns: predicted) " + train.labelNames.joined(separator: ", "))
                    for (i, row) in m.confusion.enumerated() { runtime.log("  " + train.labelNames[i].padding(toLength: 14, withPad: " ", startingAt: 0) + row.map { String(format: "%5d", $0) }.joined()) }
                }
            }
        }
        if runtime.comm.isRoot {
            let exported = head.exportedTensors()
            var tensors: [SafetensorsWriter.Entry] = [.init(name: "score.weight", shape: [head.outputs, C], values: exported.weight)]
            if config.probeBias { tensors.append(.init(name: "score.bias", shape: [head.outputs], values: exported.bias)) }
            let probeConfig: [String: Any] = [
                "type": "linear_probe", "task": train.isRegression ? "regression" : "classification", "labels": train.labelNames,
                "pooling": config.probePooling.rawValue, "layer": config.probeLayer, "hidden_size": C, "base_model_name_or_path": config.model,
                "max_length": config.maxLength, "metrics": report, "library": "dtrain",
            ].merging(config.chatTemplate.map { ["chat_template": $0.rawValue] } ?? [:]) { a, _ in a }
            let final = (config.output as NSString).appendingPathComponent("final")
            try AtomicDirectory.write(final, files: [
                ("probe_head.safetensors", SafetensorsWriter.encode(tensors, metadata: ["format": "pt"])),
                ("probe_config.json", try JSONSerialization.data(withJSONObject: probeConfig, options: [.prettyPrinted, .sortedKeys])),
            ])
            runtime.log("saved the probe head to \(final)")
        }
    }
}

/// FNV-1a over integers: a cheap fingerprint of token ids for the feature-cache key.
struct Hasher64 {
    var value: UInt64 = 0xcbf2_9ce4_8422_2325
    mutating func add(_ x: Int) {
        var v = UInt64(bitPattern: Int64(x))
        for _ in 0..<8 { value = (value ^ (v & 0xFF)) &* 0x100_0000_01B3; v >>= 8 }
    }
}

/// A probe directory (probe_config.json + probe_head.safetensors), every field checked: labels are distinct
/// strings (at least 2 for classification), the layer is -1 or within the model, the head's shape matches the
/// labels and the model's hidden size, its values are finite.
public struct ProbeDirectory {
    public let configPath: String
    public let labels: [String]
    public let regression: Bool
    public let options: ProbeOptions
    public let maxLength: Int
    public let baseModel: String?
    /// The chat template family the probe was trained with when it was named (chat_template), else the model's.
    public let chatTemplate: String?
    public let headPath: String

    public init(_ dir: String) throws {
        configPath = (dir as NSString).appendingPathComponent("probe_config.json")
        headPath = (dir as NSString).appendingPathComponent("probe_head.safetensors")
        let json = try JSONFields.read(configPath, expected: "a dtrain probe directory")
        let task = try json.string("task", default: "classification")
        guard ["classification", "regression"].contains(task) else {
            throw FormatError.key(configPath, "task", "expected classification or regression, found \"\(task)\"")
        }
        regression = task == "regression"
        labels = try json.strings("labels") ?? []
        if !regression {
            guard labels.count >= 2 else { throw FormatError.key(configPath, "labels", "expected a list of at least 2 label strings, found \(labels.count)") }
            guard Set(labels).count == labels.count else { throw FormatError.key(configPath, "labels", "expected distinct labels, found \(labels)") }
        }
        var options = ProbeOptions()
        let layer = try json.integer("layer", default: -1, in: -1...(1 << 16))
        options.layer = layer >= 0 ? layer : nil
        let pooling = try json.string("pooling", default: "last")
        guard let p = ProbeOptions.Pooling(rawValue: pooling) else {
            throw FormatError.key(configPath, "pooling", "expected last or mean, found \"\(pooling)\"")
        }
        options.pooling = p
        self.options = options
        maxLength = try json.integer("max_length", default: 512, in: 1...(1 << 24))
        baseModel = json.has("base_model_name_or_path") ? try json.string("base_model_name_or_path") : nil
        chatTemplate = json.has("chat_template") ? try json.string("chat_template") : nil
    }

    /// The head on `model`, its tensors checked against the labels and the model.
    public func head(for model: LlamaModel) throws -> ProbeHead {
        let C = model.config.hiddenSize, outputs = regression ? 1 : labels.count
        if let layer = options.layer, layer > model.config.layers {
            throw FormatError.key(configPath, "layer", "expected -1 … \(model.config.layers) (the model's layers), found \(layer)")
        }
        let head = ProbeHead(outputs: outputs, channels: C, options: options)
        let tensors = try SafetensorsFile(path: headPath)
        func read(_ name: String, _ shape: [Int]) throws -> [Float] {
            guard let t = tensors.tensors[name] else { throw FormatError.key(headPath, name, "missing tensor (expected shape \(shape))") }
            guard t.shape == shape else {
                throw FormatError.key(headPath, name, "expected shape \(shape) (\(regression ? "regression" : "\(outputs) labels in probe_config.json") × hidden size \(C)), found \(t.shape)")
            }
            let values = try tensors.floats(name)
            try FormatError.requireFinite(values, file: headPath, key: name)
            return values
        }
        let weight = try read("score.weight", [outputs, C])
        head.load(weight: weight, bias: tensors.tensors["score.bias"] != nil ? try read("score.bias", [outputs]) : nil)
        return head
    }
}

