// The fuzz targets: each takes arbitrary bytes as one input file of its kind and runs the reader dtrain uses on
// it. A thrown error is the expected answer to a bad input; a trap, a sanitizer report, a hang or a leak is a bug.
// The readers take paths, so the bytes are written to a file in a private directory (on /dev/shm when there is
// one); everything else the reader needs (a tokenizer, a model directory) comes from the committed fixtures.
// Used by the libFuzzer executable `dtrain-fuzz` (scripts/fuzz.sh) and by FuzzCorpusTests (the corpora replayed).
import DTCommands
import DTRuns
import DTFormats
import DTModel
import DTTokenizer
import DTTraining
import Foundation

public enum FuzzTargets {
    /// Every target, in the order scripts/fuzz.sh runs them (also the corpus directory names).
    public static let names = ["gguf", "gguf-tokenizer", "safetensors", "hf-config", "hf-index", "tokenizer-json", "encode",
                               "jsonl", "yaml", "adapter-config", "probe-config", "checkpoint-state"]

    /// Runs one input through `target` (an unknown name is a programmer mistake).
    public static func run(_ target: String, _ bytes: UnsafeRawBufferPointer) {
        let data = Data(bytes)
        switch target {
        case "gguf":
            guard let g = try? GGUFFile(path: write(data, "model.gguf")) else { return }
            _ = try? LlamaConfig(gguf: g)
        case "gguf-tokenizer":
            guard let g = try? GGUFFile(path: write(data, "model.gguf")), let t = try? Tokenizer(gguf: g) else { return }
            exercise(t)
        case "safetensors":
            guard let f = try? SafetensorsFile(path: write(data, "model.safetensors")) else { return }
            for name in f.tensors.keys.sorted() { _ = try? f.floats(name) }
        case "hf-config":
            _ = try? LlamaConfig(hfConfig: write(data, "config.json"))
        case "hf-index":
            let dir = modelDirectory()
            try? data.write(to: URL(fileURLWithPath: dir + "/model.safetensors.index.json"))
            _ = try? ModelSource(path: dir)
        case "tokenizer-json":
            guard let t = try? Tokenizer(tokenizerJSON: write(data, "tokenizer.json")) else { return }
            exercise(t)
        case "encode":
            let text = String(decoding: data, as: UTF8.self)
            let ids = Fixtures.smolTokenizer.encode(text, addSpecial: true)
            precondition(ids.allSatisfy { $0 >= 0 && Int($0) < Fixtures.smolTokenizer.vocabularySize }, "token id out of range")
            _ = Fixtures.smolTokenizer.decode(ids)
            _ = Fixtures.smolTokenizer.encode(text, parseSpecial: false)
        case "jsonl":
            var options = DataOptions(); options.maxLength = 64
            _ = try? Dataset.load(path: write(data, "train.jsonl"), tokenizer: Fixtures.tinyTokenizer, template: Fixtures.chatTemplate, options: options)
        case "yaml":
            var config = TrainConfig()
            try? config.apply(yaml: String(decoding: data, as: UTF8.self), source: "run.yaml")
        case "adapter-config":
            let dir = directory("lora")
            try? data.write(to: URL(fileURLWithPath: dir + "/adapter_config.json"))
            _ = try? PEFTFormat.peftType(dir)
            _ = try? LoRAWeights.readPEFT(dir, config: Fixtures.tinyConfig)
        case "probe-config":
            let dir = directory("probe")
            try? data.write(to: URL(fileURLWithPath: dir + "/probe_config.json"))
            _ = try? ProbeDirectory(dir)
        case "checkpoint-state":
            let dir = directory("checkpoint")
            try? data.write(to: URL(fileURLWithPath: dir + "/trainer_state.json"))
            guard let state = try? Checkpoint.readState(dir) else { return }
            _ = try? state.validate(file: dir + "/trainer_state.json", totalSteps: 100)
        default:
            preconditionFailure("unknown fuzz target '\(target)' (known: \(names.joined(separator: ", ")))")
        }
    }

    /// What a loaded tokenizer is used for: encode (with and without special tokens) and decode.
    static func exercise(_ t: Tokenizer) {
        let ids = t.encode("Hello world <|im_start|>user\n12 345 ünïcödé 日本語\t\r\n  end<|im_end|>", addSpecial: true)
        precondition(ids.allSatisfy { $0 >= 0 && Int($0) < t.vocabularySize }, "token id out of range")
        _ = t.decode(ids)
    }

    /// This process's scratch directory.
    static let scratch: String = {
        let root = FileManager.default.fileExists(atPath: "/dev/shm") ? "/dev/shm" : NSTemporaryDirectory()
        let dir = "\(root)/dtrain-fuzz-\(getpid())"
        try? FileManager.default.createDirectory(atPath: dir, withIntermediateDirectories: true)
        atexit { try? FileManager.default.removeItem(atPath: "/dev/shm/dtrain-fuzz-\(getpid())") }
        return dir
    }()

    static func write(_ data: Data, _ name: String) -> String {
        let path = scratch + "/" + name
        try? data.write(to: URL(fileURLWithPath: path))
        return path
    }

    /// A copy of the fixture directory `base/NAME` (made once; the fuzzed file is overwritten in it each time).
    static func directory(_ name: String) -> String {
        let dir = scratch + "/" + name
        if !FileManager.default.fileExists(atPath: dir) {
            try? FileManager.default.copyItem(atPath: Fixtures.base + "/" + name, toPath: dir)
        }
        return dir
    }

    /// The tiny HF model directory without an index (hf-index adds one).
    static func modelDirectory() -> String { directory("tiny-hf") }
}

/// The committed fixtures the targets need besides the fuzzed bytes.
enum Fixtures {
    /// The repository, from this file's place in it (Sources/DTFuzz/).
    static let root = URL(fileURLWithPath: #filePath).deletingLastPathComponent().deletingLastPathComponent().deletingLastPathComponent().path
    static let base = root + "/Tests/DTCommandsTests/Fixtures/hostile/base"
    /// SmolLM2's real tokenizer (49 152 tokens, byte-level BPE).
    static let smolTokenizer = try! Tokenizer(tokenizerJSON: root + "/Tests/DTTokenizerTests/Fixtures/smollm2_tokenizer.json")
    static let tinyTokenizer = try! Tokenizer(tokenizerJSON: base + "/tiny-hf/tokenizer.json")
    static let chatTemplate = try! ModelChatTemplate(tokenizer: tinyTokenizer, source: base + "/tiny-hf")
    static let tinyConfig = try! LlamaConfig(hfConfig: base + "/tiny-hf/config.json")
}
