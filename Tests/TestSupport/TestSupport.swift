// Shared helpers for the test targets: fixture paths, the default model's location, seeded randomness.
import DTFormats
import DTModel
import Foundation

public enum TestPaths {
    /// The default model (SmolLM2-135M-Instruct Q4_1) fetched by launch/setup.sh, or nil if absent.
    /// With DTRAIN_REQUIRE_MODEL=1 (set by .ci/run) its absence is a test failure, not a skip.
    public static var defaultModel: String? {
        let env = ProcessInfo.processInfo.environment
        let path = env["DTRAIN_MODEL"] ?? (env["HOME"] ?? "/root") + "/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }
    public static var modelRequired: Bool { ProcessInfo.processInfo.environment["DTRAIN_REQUIRE_MODEL"] == "1" }
    /// Repository root (for launch/ scripts and the built binary).
    public static var repoRoot: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }
}

/// DTModel's SplitMix64 (the sampler's generator) plus normal samples, so tests are repeatable.
public struct SeededRandom: RandomNumberGenerator {
    var base: SplitMix64
    public init(seed: UInt64) { base = SplitMix64(seed: seed) }
    public mutating func next() -> UInt64 { base.next() }
    public mutating func normal() -> Float {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self), u2 = Double.random(in: 0..<1, using: &self)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
    }
}

/// Builds small GGUF files byte by byte, so tests can make valid and deliberately broken ones.
public struct GGUFBuilder {
    public var bytes: [UInt8] = []
    public init() {}
    public mutating func u32(_ v: UInt32) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func u64(_ v: UInt64) { withUnsafeBytes(of: v.littleEndian) { bytes += $0 } }
    public mutating func f32(_ v: Float) { u32(v.bitPattern) }
    public mutating func string(_ s: String) { u64(UInt64(s.utf8.count)); bytes += Array(s.utf8) }
    public mutating func header(tensors: UInt64, kvs: UInt64, version: UInt32 = 3) {
        bytes += Array("GGUF".utf8); u32(version); u64(tensors); u64(kvs)
    }
    public mutating func kvString(_ key: String, _ value: String) { string(key); u32(8); string(value) }
    public mutating func kvU32(_ key: String, _ value: UInt32) { string(key); u32(4); u32(value) }
    public mutating func tensorInfo(_ name: String, dims: [UInt64], type: UInt32, offset: UInt64) {
        string(name); u32(UInt32(dims.count)); for d in dims { u64(d) }; u32(type); u64(offset)
    }
    public mutating func align(_ n: Int = 32) { while bytes.count % n != 0 { bytes.append(0) } }

    /// Writes the bytes to a fresh temporary file and returns its path.
    public func write(name: String = "test.gguf") -> String {
        let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dtrain-tests-\(UUID().uuidString)")
        try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
        let path = dir.appendingPathComponent(name).path
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        return path
    }
}

public func temporaryDirectory() -> String {
    let dir = FileManager.default.temporaryDirectory.appendingPathComponent("dtrain-tests-\(UUID().uuidString)")
    try? FileManager.default.createDirectory(at: dir, withIntermediateDirectories: true)
    return dir.path
}

/// Writes a small random Llama in Hugging Face layout (config.json + model.safetensors) for tests.
public enum TinyModel {
    public struct Shape {
        public var vocab = 64, hidden = 32, intermediate = 48, layers = 2, heads = 4, kvHeads = 2
        public var tied = false, bias = false, architecture = "llama"
        public init() {}
    }

    public static func write(_ s: Shape = Shape(), seed: UInt64 = 1, std: Float = 0.2) -> String {
        let dir = temporaryDirectory()
        var rng = SeededRandom(seed: seed)
        func tensor(_ name: String, _ shape: [Int], base: Float = 0) -> SafetensorsWriter.Entry {
            .init(name: name, shape: shape, values: (0..<shape.reduce(1, *)).map { _ in base + std * rng.normal() })
        }
        let hd = s.hidden / s.heads
        var entries = [tensor("model.embed_tokens.weight", [s.vocab, s.hidden], base: 0)]
        for l in 0..<s.layers {
            let p = "model.layers.\(l)."
            entries += [tensor(p + "input_layernorm.weight", [s.hidden], base: 1),
                        tensor(p + "post_attention_layernorm.weight", [s.hidden], base: 1),
                        tensor(p + "self_attn.q_proj.weight", [s.heads * hd, s.hidden]),
                        tensor(p + "self_attn.k_proj.weight", [s.kvHeads * hd, s.hidden]),
                        tensor(p + "self_attn.v_proj.weight", [s.kvHeads * hd, s.hidden]),
                        tensor(p + "self_attn.o_proj.weight", [s.hidden, s.heads * hd]),
                        tensor(p + "mlp.gate_proj.weight", [s.intermediate, s.hidden]),
                        tensor(p + "mlp.up_proj.weight", [s.intermediate, s.hidden]),
                        tensor(p + "mlp.down_proj.weight", [s.hidden, s.intermediate])]
            if s.bias {
                entries += [tensor(p + "self_attn.q_proj.bias", [s.heads * hd]), tensor(p + "self_attn.k_proj.bias", [s.kvHeads * hd]),
                            tensor(p + "self_attn.v_proj.bias", [s.kvHeads * hd])]
            }
        }
        entries.append(tensor("model.norm.weight", [s.hidden], base: 1))
        if !s.tied { entries.append(tensor("lm_head.weight", [s.vocab, s.hidden])) }
        try! SafetensorsWriter.encode(entries).write(to: URL(fileURLWithPath: dir + "/model.safetensors"))
        let config = """
        {"model_type": "\(s.architecture)", "vocab_size": \(s.vocab), "hidden_size": \(s.hidden), "intermediate_size": \(s.intermediate),
         "num_hidden_layers": \(s.layers), "num_attention_heads": \(s.heads), "num_key_value_heads": \(s.kvHeads),
         "rms_norm_eps": 1e-5, "rope_theta": 10000.0, "max_position_embeddings": 64, "tie_word_embeddings": \(s.tied),
         "attention_bias": \(s.bias)}
        """
        try! config.write(toFile: dir + "/config.json", atomically: true, encoding: .utf8)
        return dir
    }
}

/// A tiny byte-level BPE tokenizer.json (256 byte symbols, a few merges, ChatML special tokens and chat
/// template) to pair with TinyModel in end-to-end tests. Returns its vocabulary size.
public enum TinyTokenizer {
    @discardableResult
    public static func write(into dir: String) -> Int {
        var printable: [Int] = Array(33...126) + Array(161...172) + Array(174...255)
        var symbols = [String](repeating: "", count: 256)
        var next = 256
        for b in 0..<256 {
            if printable.contains(b) { symbols[b] = String(UnicodeScalar(UInt8(b))) } else { symbols[b] = String(UnicodeScalar(UInt32(next))!); next += 1 }
        }
        printable.removeAll()
        var vocab: [String: Int] = [:]
        for (i, s) in symbols.enumerated() { vocab[s] = i }
        let merges = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("a", "n"), ("i", "n")]
        for (a, b) in merges { vocab[a + b] = vocab.count }
        let special = ["<|endoftext|>", "<|im_start|>", "<|im_end|>"]
        let vocabJSON = vocab.sorted { $0.value < $1.value }.map { "\(SafetensorsWriter.jsonString($0.key)): \($0.value)" }.joined(separator: ", ")
        let added = special.enumerated().map { "{\"id\": \(vocab.count + $0.offset), \"content\": \"\($0.element)\", \"special\": true}" }
        let tokenizer = """
        {"model": {"type": "BPE", "vocab": {\(vocabJSON)}, "merges": [\(merges.map { "\"\($0.0) \($0.1)\"" }.joined(separator: ", "))]},
         "added_tokens": [\(added.joined(separator: ", "))],
         "pre_tokenizer": {"type": "ByteLevel", "add_prefix_space": false, "use_regex": true}}
        """
        try! tokenizer.write(toFile: dir + "/tokenizer.json", atomically: true, encoding: .utf8)
        let config = #"{"chat_template": "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}", "eos_token": "<|im_end|>", "pad_token": "<|endoftext|>", "bos_token": "<|im_start|>"}"#
        try! config.write(toFile: dir + "/tokenizer_config.json", atomically: true, encoding: .utf8)
        return vocab.count + special.count
    }
}

/// Runs the built dtrain binary (or mpirun with it) and captures its output.
public enum DTrainProcess {
    public static var binary: String { TestPaths.repoRoot + "/.build/release/dtrain" }

    public struct Result {
        public var status: Int32; public var stdout: String; public var stderr: String
        /// Ended by a signal (a crash: SIGILL/SIGTRAP from a Swift trap, SIGSEGV, SIGFPE), not by exit().
        public var signalled = false
        /// Killed after the timeout.
        public var timedOut = false
    }

    public static func run(_ arguments: [String], ranks: Int = 0, environment: [String: String] = [:],
                           timeout: TimeInterval = 600, directory: String? = nil) throws -> Result {
        let p = Process()
        if ranks > 0 {
            p.executableURL = URL(fileURLWithPath: "/usr/bin/mpirun")
            p.arguments = ["-np", "\(ranks)", "--bind-to", "none", "--oversubscribe", binary] + arguments
        } else {
            p.executableURL = URL(fileURLWithPath: binary)
            p.arguments = arguments
        }
        var env = ProcessInfo.processInfo.environment
        env["OMPI_ALLOW_RUN_AS_ROOT"] = "1"; env["OMPI_ALLOW_RUN_AS_ROOT_CONFIRM"] = "1"
        for (k, v) in environment { env[k] = v }
        p.environment = env
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let dir = temporaryDirectory()
        FileManager.default.createFile(atPath: dir + "/out", contents: nil)
        FileManager.default.createFile(atPath: dir + "/err", contents: nil)
        p.standardOutput = FileHandle(forWritingAtPath: dir + "/out")
        p.standardError = FileHandle(forWritingAtPath: dir + "/err")
        try p.run()
        let deadline = Date().addingTimeInterval(timeout)
        var timedOut = false
        while p.isRunning {
            if Date() > deadline { timedOut = true; p.terminate(); kill(p.processIdentifier, SIGKILL) }
            usleep(20_000)
        }
        let stdout = (try? String(contentsOfFile: dir + "/out", encoding: .utf8)) ?? ""
        let stderr = (try? String(contentsOfFile: dir + "/err", encoding: .utf8)) ?? ""
        return Result(status: p.terminationStatus, stdout: stdout, stderr: stderr,
                      signalled: p.terminationReason == .uncaughtSignal, timedOut: timedOut)
    }
}

extension TinyModel {
    /// A tiny model directory with TinyTokenizer's tokenizer.json beside it (vocabulary sized to the tokenizer).
    public static func writeWithTokenizer(_ base: Shape = Shape(), seed: UInt64 = 1) -> String {
        let dir = temporaryDirectory()
        var shape = base
        shape.vocab = TinyTokenizer.write(into: dir)
        let model = write(shape, seed: seed)
        for f in ["model.safetensors", "config.json"] { try? FileManager.default.copyItem(atPath: model + "/" + f, toPath: dir + "/" + f) }
        return dir
    }
}

/// Runs a bash command line, capturing stdout and stderr together.
public enum Shell {
    public static func run(_ command: String, environment: [String: String] = [:], directory: String? = nil) throws -> (Int32, String) {
        let p = Process()
        p.executableURL = URL(fileURLWithPath: "/bin/bash")
        p.arguments = ["-c", command + " 2>&1"]
        var env = ProcessInfo.processInfo.environment
        for (k, v) in environment { env[k] = v }
        p.environment = env
        if let directory { p.currentDirectoryURL = URL(fileURLWithPath: directory) }
        let pipe = Pipe()
        p.standardOutput = pipe
        try p.run()
        let out = pipe.fileHandleForReading.readDataToEndOfFile()
        p.waitUntilExit()
        return (p.terminationStatus, String(decoding: out, as: UTF8.self))
    }
}

/// This process's resident memory of a mapped file, from /proc/self/smaps (the sum over its mappings).
public enum MappedResidency {
    public static func kibibytes(of path: String) -> Int {
        // Read to the end: String(contentsOfFile:) stops after the first page of a /proc file.
        guard let handle = FileHandle(forReadingAtPath: "/proc/self/smaps"),
              let smaps = String(data: handle.readDataToEndOfFile(), encoding: .utf8) else { return -1 }
        let target = (path as NSString).resolvingSymlinksInPath
        var inTarget = false, total = 0
        for line in smaps.split(separator: "\n") {
            let fields = line.split(separator: " ", omittingEmptySubsequences: true)
            if let first = fields.first, first.contains("-"), first.allSatisfy({ $0.isHexDigit || $0 == "-" }) {
                inTarget = fields.count >= 6 && String(fields[5...].joined(separator: " ")) == target
            } else if inTarget, fields.first == "Rss:", fields.count >= 2, let kib = Int(fields[1]) {
                total += kib
            }
        }
        return total
    }
}
