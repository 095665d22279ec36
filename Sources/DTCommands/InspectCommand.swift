// `dtrain inspect FILE`: architecture, hyper-parameters, tensors, tokenizer and chat template of a model.
import ArgumentParser
import DTFormats
import DTModel
import DTTokenizer
import DTTraining
import DTRuns
import Foundation

struct Inspect: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Describe a GGUF file or Hugging Face model directory.")

    @Argument(help: "Model file or directory (default: the default model).")
    var path: String?

    @Flag(help: "List every tensor.")
    var tensors = false

    func run() throws {
        let p = path ?? DefaultModel.path
        do {
            try Console.out(InspectReport.make(path: p, listTensors: tensors))
        } catch {
            Console.error("error: \(error)")
            throw ExitCode(1)
        }
    }
}

public enum InspectReport {
    public static func make(path: String, listTensors: Bool) throws -> String {
        if LoRAWeights.isGGUFFile(path) {
            let g = try GGUFFile(path: path)
            if g.metadata["general.type"]?.string == "adapter" { return adapter(g, listTensors: listTensors) }
        }
        let source = try ModelSource(path: path)
        let c = source.config
        var lines: [String] = []
        lines.append("model: \(path)")
        if let g = source.gguf { lines.append("format: GGUF v\(g.version), \(g.tensors.count) tensors, \(g.metadata.count) metadata keys") }
        else { lines.append("format: Hugging Face directory (config.json + safetensors)") }
        lines.append("architecture: \(c.architecture.name)\(c.architecture.slidingWindow.map { ", sliding window \($0)" } ?? "")")
        lines.append("layers \(c.layers), hidden \(c.hiddenSize), intermediate \(c.intermediateSize), heads \(c.heads), kv heads \(c.kvHeads), head dim \(c.headDim)")
        lines.append("vocab \(c.vocabSize), context \(c.maxPositions), rope theta \(c.ropeTheta)\(c.ropeScaling.map { ", llama3 rope scaling ×\($0.factor)" } ?? ""), rms eps \(c.rmsNormEps)")
        lines.append("output head: \(c.tiedEmbeddings ? "tied to token embeddings" : "separate")\(c.architecture.qkvBias ? ", q/k/v bias" : "")\(c.architecture.qkNorm ? ", q/k norm" : "")")
        lines.append("parameters: \(c.parameterCount) (\(String(format: "%.1f", Double(c.parameterCount) / 1e6)) M)")
        var typeCounts: [String: (Int, Int)] = [:]
        var totalBytes = 0
        if let g = source.gguf {
            for t in g.tensors {
                typeCounts[t.type.name, default: (0, 0)].0 += 1
                typeCounts[t.type.name, default: (0, 0)].1 += t.byteCount
                totalBytes += t.byteCount
            }
        } else {
            for t in source.safetensorsInventory {
                typeCounts[t.dtype, default: (0, 0)].0 += 1
                typeCounts[t.dtype, default: (0, 0)].1 += t.bytes
                totalBytes += t.bytes
            }
        }
        lines.append("tensor data: \(totalBytes) bytes (\(String(format: "%.1f", Double(totalBytes) / 1048576)) MiB); "
                     + typeCounts.keys.sorted().map { "\($0) ×\(typeCounts[$0]!.0)" }.joined(separator: ", "))
        do {
            let tok = try ModelLoader.tokenizer(for: source)
            lines.append("tokenizer: \(tok.sentencePiece == nil ? "byte-level BPE" : "SentencePiece-style BPE (▁ spaces, byte fallback)"), \(tok.vocabularySize) tokens, \(tok.sentencePiece.map { "prefix \($0.prefix.rawValue)" } ?? "pre-tokenizer \(tok.preTokenizer.family.rawValue)"), \(tok.specialTokens.count) special; bos \(tok.bosToken.map { "\($0) \(tok.tokens[Int($0)])" } ?? "none"), eos \(tok.eosToken.map { "\($0) \(tok.tokens[Int($0)])" } ?? "none"), add bos \(tok.addBos)")
            switch try ModelChatTemplate(tokenizer: tok, source: path) {
            case .available(let template):
                lines.append("chat template: \(template.family.rawValue)\(template.defaultSystem.map { " (default system: \"\($0)\")" } ?? "")")
            case .unavailable:
                lines.append("chat template: \(tok.chatTemplate == nil ? "none" : "unrecognised")")
            }
        } catch {
            lines.append("tokenizer: unavailable (\(error))")
        }
        if listTensors {
            if let g = source.gguf {
                for t in g.tensors { lines.append("  \(t.name)  \(t.type.name)  \(t.dims)  \(t.byteCount) B") }
            } else {
                for t in source.safetensorsInventory { lines.append("  \(t.name)  \(t.dtype)  \(t.shape)  \(t.bytes) B") }
            }
        }
        return lines.joined(separator: "\n")
    }
}

extension InspectReport {
    /// A llama.cpp adapter GGUF: every metadata key (arrays summarised), rank and targets from its tensors.
    static func adapter(_ g: GGUFFile, listTensors: Bool) -> String {
        var lines = ["adapter: \(g.path)", "format: GGUF v\(g.version) \(g.metadata["adapter.type"]?.string ?? "?") adapter (llama.cpp), \(g.tensors.count) tensors"]
        let ranks = Set(g.tensors.filter { $0.name.hasSuffix(".lora_b") }.map { $0.dims[0] })
        let targets = Set(g.tensors.compactMap { t -> String? in
            let parts = t.name.split(separator: ".")
            return parts.count == 5 && parts[0] == "blk" ? String(parts[2]) : nil
        })
        lines.append("rank \(ranks.sorted().map(String.init).joined(separator: ", ")) on \(targets.sorted().joined(separator: ", ")); types "
                     + Set(g.tensors.map(\.type.name)).sorted().joined(separator: ", "))
        for key in g.metadataKeys {
            let value: String
            switch g.metadata[key]! {
            case .array(let items): value = "[\(items.prefix(8).map { $0.string ?? $0.double.map { "\($0)" } ?? "?" }.joined(separator: ", "))\(items.count > 8 ? ", … (\(items.count))" : "")]"
            case .string(let s): value = "\"\(s)\""
            case .bool(let b): value = "\(b)"
            case let v: value = v.int.map(String.init) ?? v.double.map { "\($0)" } ?? "?"
            }
            lines.append("  \(key) = \(value)")
        }
        if listTensors { for t in g.tensors { lines.append("  \(t.name)  \(t.type.name)  \(t.dims)  \(t.byteCount) B") } }
        return lines.joined(separator: "\n")
    }
}

struct Tokenize: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Show the token ids (and pieces) of a text.")

    @OptionGroup var modelOptions: ModelOptions
    @Argument(help: "Text to tokenize (default: read standard input).")
    var text: String?
    @Flag(help: "Render the text as a user turn with the model's chat template first.")
    var chat = false
    @Flag(help: "Print only the ids.")
    var idsOnly = false

    func run() throws {
        do {
            let source = try ModelSource(path: modelOptions.model ?? DefaultModel.path)
            let tok = try ModelLoader.tokenizer(for: source)
            var input = text ?? String(decoding: FileHandle.standardInput.readDataToEndOfFile(), as: UTF8.self)
            if chat {
                input = try ModelChatTemplate(tokenizer: tok, source: source.path).required()
                    .renderText([ChatMessage(role: "user", content: input)], addGenerationPrompt: true)
            }
            let ids = tok.encode(input, addSpecial: true)
            Console.out(ids.map(String.init).joined(separator: " "))
            if !idsOnly {
                for id in ids { Console.out("\(id)\t\(String(reflecting: tok.decode([id])))") }
                Console.out("\(ids.count) tokens")
            }
        } catch {
            Console.error("error: \(error)")
            throw ExitCode(1)
        }
    }
}
