// Training data: JSONL with {"text"}, {"prompt","completion"}, {"messages":[{"role","content"}…]} (rendered with
// the chat template; loss on assistant turns by default) or Alpaca {"instruction","input","output"}, or a plain
// .txt file cut into windows. Each example becomes tokens plus next-token labels (−100 = no loss there).
// Every bad line is an error naming the file and line; nothing is dropped silently.
import DTFormats
import DTModel
import DTTokenizer
import Foundation

public let ignoreLabel: Int32 = -100

public struct TrainingExample: Equatable, Sendable {
    /// (T) token ids.
    public var tokens: [Int32]
    /// (T) labels[t] = the token to predict after position t, or −100.
    public var labels: [Int32]
    /// 1-based line in the source file (0 for .txt windows).
    public var line: Int
    public var targetCount: Int { labels.reduce(0) { $0 + ($1 >= 0 ? 1 : 0) } }

    public init(tokens: [Int32], labels: [Int32], line: Int) {
        precondition(tokens.count == labels.count, "one label per token")
        self.tokens = tokens; self.labels = labels; self.line = line
    }
}

public struct DataOptions: Sendable {
    public var maxLength = 512
    /// Put the loss on prompt / user tokens as well (default: completions and assistant turns only).
    public var trainOnPrompt = false
    /// "truncate" (count and report) or "error" (refuse a sample longer than maxLength).
    public var overlong = "truncate"
    public init() {}
}

public struct Dataset {
    public let path: String
    public var examples: [TrainingExample]
    public var truncated: Int

    public var count: Int { examples.count }

    public init(path: String, examples: [TrainingExample], truncated: Int) {
        self.path = path; self.examples = examples; self.truncated = truncated
    }

    public static func load(path: String, tokenizer: Tokenizer, template: ModelChatTemplate, options: DataOptions) throws -> Dataset {
        var examples: [TrainingExample] = []
        var truncated = 0
        if !path.hasSuffix(".jsonl") && !path.hasSuffix(".json") {
            let ids = tokenizer.encode(try TextFiles.readUTF8(path), addSpecial: true)
            var start = 0
            while start + 1 < ids.count {
                let window = Array(ids[start..<min(start + options.maxLength, ids.count)])
                examples.append(TrainingExample(tokens: window, labels: Array(window.dropFirst()) + [ignoreLabel], line: 0))
                start += options.maxLength
            }
        } else {
            for (line, object) in try TextFiles.readJSONL(path) {
                let segments = try Self.segments(object, file: path, line: line, template: template,
                                                 eosText: tokenizer.eosToken.map { tokenizer.tokens[Int($0)] } ?? "")
                var tokens: [Int32] = []
                var trainable: [Bool] = []
                if tokenizer.addBos, let bos = tokenizer.bosToken, template.template == nil || object["messages"] == nil {
                    tokens.append(bos); trainable.append(false)
                }
                for (text, isTarget) in segments {
                    let ids = tokenizer.encode(text)
                    tokens += ids
                    trainable += Array(repeating: isTarget || options.trainOnPrompt, count: ids.count)
                }
                if tokens.count > options.maxLength {
                    if options.overlong == "error" {
                        throw FormatError.line(path, line, "sample has \(tokens.count) tokens, more than max_length \(options.maxLength)")
                    }
                    tokens.removeLast(tokens.count - options.maxLength)
                    trainable.removeLast(trainable.count - options.maxLength)
                    truncated += 1
                }
                var labels = [Int32](repeating: ignoreLabel, count: tokens.count)
                for t in 0..<max(0, tokens.count - 1) where trainable[t + 1] { labels[t] = tokens[t + 1] }
                let example = TrainingExample(tokens: tokens, labels: labels, line: line)
                guard example.targetCount > 0 else {
                    throw FormatError.line(path, line, tokens.count >= options.maxLength
                        ? "no target tokens left after truncation to max_length \(options.maxLength)"
                        : "sample has no target tokens (empty completion or no assistant turn)")
                }
                examples.append(example)
            }
        }
        guard !examples.isEmpty else {
            throw FormatError(file: path, location: "", "the dataset is empty (expected at least one example)")
        }
        return Dataset(path: path, examples: examples, truncated: truncated)
    }

    /// Texts of one JSONL object with their target flag, by format.
    static func segments(_ o: [String: Any], file: String, line: Int, template: ModelChatTemplate, eosText: String) throws -> [(String, Bool)] {
        func string(_ key: String, in dict: [String: Any] = o, at label: String? = nil) throws -> String {
            guard let value = dict[key] else {
                throw FormatError.line(file, line, "missing field \"\(label ?? key)\"")
            }
            guard let s = value as? String else {
                throw FormatError.line(file, line, "field \"\(label ?? key)\" must be a string, found \(type(of: value))")
            }
            return s
        }
        if let messages = o["messages"] {
            guard let list = messages as? [[String: Any]], !list.isEmpty else {
                throw FormatError.line(file, line, "\"messages\" must be a non-empty list of {\"role\", \"content\"} objects")
            }
            let chat = try messagesOf(list, file: file, line: line)
            return try required(template, file: file, line: line).render(chat, addGenerationPrompt: false).map { ($0.text, $0.isAssistant) }
        }
        if o["prompt"] != nil || o["completion"] != nil {
            return [(try string("prompt"), false), (try string("completion") + eosText, true)]
        }
        if o["instruction"] != nil || o["output"] != nil {
            let input = (o["input"] as? String) ?? ""
            let prompt = input.isEmpty
                ? "Below is an instruction that describes a task. Write a response that appropriately completes the request.\n\n### Instruction:\n\(try string("instruction"))\n\n### Response:\n"
                : "Below is an instruction that describes a task, paired with an input that provides further context. Write a response that appropriately completes the request.\n\n### Instruction:\n\(try string("instruction"))\n\n### Input:\n\(input)\n\n### Response:\n"
            return [(prompt, false), (try string("output") + eosText, true)]
        }
        if o["text"] != nil { return [(try string("text") + eosText, true)] }
        throw FormatError.line(file, line, "unknown record: expected \"text\", \"prompt\"+\"completion\", \"messages\" or \"instruction\"+\"output\"; found keys \(o.keys.sorted())")
    }

    /// Chat messages of a JSONL "messages" list, each a {"role": system|user|assistant, "content": string} object.
    public static func messagesOf(_ list: [[String: Any]], file: String, line: Int) throws -> [ChatMessage] {
        try list.enumerated().map { i, m in
            guard let role = m["role"] as? String, let content = m["content"] as? String else {
                throw FormatError.line(file, line, "messages[\(i)] needs string fields \"role\" and \"content\"")
            }
            guard ["system", "user", "assistant"].contains(role) else {
                throw FormatError.line(file, line, "messages[\(i)].role must be system, user or assistant, found \"\(role)\"")
            }
            return ChatMessage(role: role, content: content)
        }
    }

    /// The template chat messages at `file`:`line` need, or the reason there is none, naming the line.
    public static func required(_ template: ModelChatTemplate, file: String, line: Int) throws -> ChatTemplate {
        do { return try template.required() } catch {
            throw FormatError.line(file, line, "chat messages need a chat template: \(error) (set chat_template)")
        }
    }

    /// Tokens of the longest example.
    public var longest: Int { examples.map(\.tokens.count).max() ?? 0 }

    /// Splits off a deterministic validation share (fraction of examples, chosen by seed); at least one
    /// example on each side.
    public func split(validFraction: Double, seed: UInt64) throws -> (train: Dataset, valid: Dataset) {
        let n = max(1, Int((Double(count) * validFraction).rounded()))
        guard n < count else {
            throw FormatError.key(path, "valid_split", "\(validFraction) of \(count) example\(count == 1 ? "" : "s") holds out \(n), leaving nothing to train on (expected a fraction that keeps at least one example, or valid_data)")
        }
        let order = SampleOrder.permutation(count: count, seed: seed ^ 0x5EED_5A11, epoch: 0)
        let validSet = Set(order.prefix(n))
        let train = examples.indices.filter { !validSet.contains($0) }.map { examples[$0] }
        let valid = order.prefix(n).sorted().map { examples[$0] }
        return (Dataset(path: path, examples: train, truncated: truncated), Dataset(path: path + " (validation split)", examples: valid, truncated: 0))
    }
}

/// The global sample order: depends only on the seed and epoch, never on the number of ranks.
public enum SampleOrder {
    public static func permutation(count: Int, seed: UInt64, epoch: Int) -> [Int] {
        var rng = SplitMix64(seed: seed &+ UInt64(epoch) &* 0x9E37_79B9_7F4A_7C15)
        var order = Array(0..<count)
        if count > 1 {
            for i in stride(from: count - 1, to: 0, by: -1) {
                let j = Int(rng.next() % UInt64(i + 1))
                order.swapAt(i, j)
            }
        }
        return order
    }
}

