// Builds a Tokenizer from GGUF metadata (tokenizer.ggml.*) or from a Hugging Face tokenizer.json.
import DTFormats
import Foundation

extension Tokenizer {
    /// From GGUF keys tokenizer.ggml.{model, pre, tokens, token_type, merges, bos/eos/padding_token_id, add_bos_token};
    /// model "llama" (SentencePiece-style) reads scores and add_space_prefix instead of merges and pre.
    public convenience init(gguf: GGUFFile) throws {
        let file = gguf.path
        let meta = gguf.metadata
        guard let model = meta["tokenizer.ggml.model"]?.string else {
            throw FormatError.key(file, "tokenizer.ggml.model", "missing: this GGUF has no tokenizer")
        }
        guard model == "gpt2" || model == "llama" else {
            throw FormatError.key(file, "tokenizer.ggml.model", "expected 'gpt2' (byte-level BPE) or 'llama' (SentencePiece-style BPE), found '\(model)'")
        }
        guard let tokenValues = meta["tokenizer.ggml.tokens"]?.array else {
            throw FormatError.key(file, "tokenizer.ggml.tokens", "missing or not an array")
        }
        let tokens = try tokenValues.enumerated().map { i, v -> String in
            guard let s = v.string else { throw FormatError.key(file, "tokenizer.ggml.tokens[\(i)]", "expected a string") }
            return s
        }
        if model == "llama" {
            try self.init(llamaGGUF: gguf, tokens: tokens)
            return
        }
        let merges = try (meta["tokenizer.ggml.merges"]?.array ?? []).enumerated().map { i, v -> (String, String) in
            guard let s = v.string, let space = s.firstIndex(of: " ") else {
                throw FormatError.key(file, "tokenizer.ggml.merges[\(i)]", "expected 'left right'")
            }
            return (String(s[..<space]), String(s[s.index(after: space)...]))
        }
        var special = Set<Int32>()
        if let types = meta["tokenizer.ggml.token_type"]?.array {
            guard types.count == tokens.count else {
                throw FormatError.key(file, "tokenizer.ggml.token_type", "expected \(tokens.count) entries, found \(types.count)")
            }
            for (i, t) in types.enumerated() where t.int == 3 || t.int == 4 { special.insert(Int32(i)) }
        }
        let family = try Self.family(gguf: gguf)
        func id(_ key: String) throws -> Int32? { try Self.tokenId(meta, key, count: tokens.count, file: file) }
        try self.init(tokens: tokens, merges: merges, special: special, preTokenizer: PreTokenizer(family),
                      bos: try id("tokenizer.ggml.bos_token_id"), eos: try id("tokenizer.ggml.eos_token_id"),
                      pad: try id("tokenizer.ggml.padding_token_id"),
                      addBos: meta["tokenizer.ggml.add_bos_token"]?.bool ?? false,
                      ignoreMerges: family == .llama3,
                      chatTemplate: meta["tokenizer.chat_template"]?.string, source: file)
    }

    /// The pre-tokenizer family a GGUF's `tokenizer.ggml.pre` names.
    static func family(gguf: GGUFFile) throws -> PreTokenizerFamily {
        let pre = gguf.metadata["tokenizer.ggml.pre"]?.string ?? "default"
        switch pre {
        case "default", "gpt2", "gpt-2": return .gpt2
        case "smollm", "starcoder", "refact": return .smollm
        case "llama3", "llama-bpe", "llama-v3", "smaug-bpe", "dbrx": return .llama3
        case "qwen2", "deepseek-r1-qwen": return .qwen2
        default:
            throw FormatError.key(gguf.path, "tokenizer.ggml.pre", "unknown pre-tokenizer '\(pre)' (known: gpt2, smollm, llama-bpe, qwen2)")
        }
    }

    /// From a Hugging Face tokenizer.json (model.type BPE, byte-level or SentencePiece-style), plus the optional
    /// tokenizer_config.json beside it (chat_template, bos/eos, add_bos_token).
    public convenience init(tokenizerJSON path: String) throws {
        let data: Data
        do { data = try Data(contentsOf: URL(fileURLWithPath: path)) } catch {
            throw FormatError(file: path, location: "", "cannot read: \(error.localizedDescription)")
        }
        guard let json = (try? JSONSerialization.jsonObject(with: data)) as? [String: Any] else {
            throw FormatError(file: path, location: "", "expected a JSON object (malformed tokenizer.json)")
        }
        guard let model = json["model"] as? [String: Any], (model["type"] as? String) == "BPE" else {
            throw FormatError.key(path, "model.type", "expected 'BPE'")
        }
        guard let vocabObject = model["vocab"] as? [String: Any] else {
            throw FormatError.key(path, "model.vocab", "expected an object of token → id")
        }
        // Sorted by id (then token), so a duplicate id is reported the same way on every run.
        let vocab = try vocabObject.map { t, n -> (String, Int) in
            guard let i = JSONFields.integer(n), i >= 0 else {
                throw FormatError.key(path, "model.vocab.\(t)", "expected a non-negative integer id, found \(JSONFields.describe(n))")
            }
            return (t, i)
        }.sorted { ($0.1, $0.0) < ($1.1, $1.0) }
        var added: [(String, Int, Bool)] = []
        for (i, entry) in ((json["added_tokens"] as? [[String: Any]]) ?? []).enumerated() {
            guard let content = entry["content"] as? String, let id = JSONFields.integer(entry["id"]), id >= 0 else {
                throw FormatError.key(path, "added_tokens[\(i)]", "expected {\"id\": a non-negative integer, \"content\": a string}")
            }
            added.append((content, id, (entry["special"] as? Bool) ?? false))
        }
        let size = max((vocab.last?.1 ?? -1), (added.map(\.1).max() ?? -1)) + 1
        guard size <= 10_000_000 else { throw FormatError.key(path, "model.vocab", "vocabulary of \(size) ids is implausible") }
        var tokens = [String](repeating: "", count: size)
        var filled = [Bool](repeating: false, count: size)
        for (t, i) in vocab {
            guard !filled[i] else {
                throw FormatError.key(path, "model.vocab", "id \(i) is given to both '\(tokens[i])' and '\(t)' (expected one token per id)")
            }
            tokens[i] = t; filled[i] = true
        }
        var special = Set<Int32>()
        for (content, id, _) in added {
            // An added token usually repeats its vocabulary entry; another token under the same id would replace it.
            guard !filled[id] || tokens[id] == content else {
                throw FormatError.key(path, "added_tokens", "id \(id) is '\(tokens[id])' \(special.contains(Int32(id)) ? "in an earlier added token" : "in model.vocab") but '\(content)' here (expected one token per id)")
            }
            tokens[id] = content; filled[id] = true
            special.insert(Int32(id))
        }
        if let hole = filled.firstIndex(of: false) {
            throw FormatError.key(path, "model.vocab", "no token has id \(hole) (ids must be contiguous)")
        }
        var merges: [(String, String)] = []
        for (i, m) in ((model["merges"] as? [Any]) ?? []).enumerated() {
            if let s = m as? String, let space = s.firstIndex(of: " ") {
                merges.append((String(s[..<space]), String(s[s.index(after: space)...])))
            } else if let pair = m as? [String], pair.count == 2 {
                merges.append((pair[0], pair[1]))
            } else {
                throw FormatError.key(path, "model.merges[\(i)]", "expected 'left right' or [left, right]")
            }
        }
        let spaces = try Self.sentencePieceRule(json: json, model: model, file: path)
        let family = spaces == nil ? try Self.family(of: json["pre_tokenizer"], file: path) : .gpt2
        let dir = (path as NSString).deletingLastPathComponent
        let configPath = (dir as NSString).appendingPathComponent("tokenizer_config.json")
        var template: String?, bos: Int32?, eos: Int32?, pad: Int32?, addBos = false
        if let cdata = FileManager.default.contents(atPath: configPath) {
            guard let config = (try? JSONSerialization.jsonObject(with: cdata)) as? [String: Any] else {
                throw FormatError(file: configPath, location: "", "expected a JSON object")
            }
            template = config["chat_template"] as? String
            func tokenId(_ key: String) -> Int32? {
                let value = config[key]
                let text = (value as? String) ?? ((value as? [String: Any])?["content"] as? String)
                return text.flatMap { tokens.firstIndex(of: $0) }.map(Int32.init)
            }
            bos = tokenId("bos_token"); eos = tokenId("eos_token"); pad = tokenId("pad_token")
            addBos = (config["add_bos_token"] as? Bool) ?? false
        }
        // transformers ≥ 4.43 may save the template as chat_template.jinja (5.x always does); it wins over the key.
        let jinjaPath = (dir as NSString).appendingPathComponent("chat_template.jinja")
        if FileManager.default.fileExists(atPath: jinjaPath) { template = try TextFiles.readUTF8(jinjaPath) }
        let ignoreMerges = (model["ignore_merges"] as? Bool) ?? false
        if let spaces {
            let byteIds = Set(tokens.indices.filter { !special.contains(Int32($0)) && Self.byteValue(tokens[$0]) != nil }.map { Int32($0) })
            try self.init(sentencePiece: spaces, tokens: tokens, mergeOrder: .ranks(merges), byteTokenIds: byteIds, special: special,
                          bos: bos, eos: eos, pad: pad, addBos: addBos, ignoreMerges: ignoreMerges, chatTemplate: template, source: path)
        } else {
            try self.init(tokens: tokens, merges: merges, special: special, preTokenizer: PreTokenizer(family),
                          bos: bos, eos: eos, pad: pad, addBos: addBos, ignoreMerges: ignoreMerges, chatTemplate: template, source: path)
        }
    }

    /// Recognises the pre-tokenizer family from tokenizer.json's pre_tokenizer section.
    static func family(of pre: Any?, file: String) throws -> PreTokenizerFamily {
        guard let pre = pre as? [String: Any] else {
            throw FormatError.key(file, "pre_tokenizer", "missing; expected a byte-level pre-tokenizer")
        }
        let steps = (pre["type"] as? String) == "Sequence" ? ((pre["pretokenizers"] as? [[String: Any]]) ?? []) : [pre]
        var digitsAlone = false, pattern: String?, byteLevelRegex = false
        for step in steps {
            switch step["type"] as? String {
            case "Digits": digitsAlone = (step["individual_digits"] as? Bool) ?? false
            case "Split": pattern = ((step["pattern"] as? [String: Any])?["Regex"] as? String) ?? pattern
            case "ByteLevel": byteLevelRegex = (step["use_regex"] as? Bool) ?? true
            default: break
            }
        }
        if let p = pattern {
            if p.contains("\\p{N}{1,3}") { return .llama3 }
            if p.contains("[^\\r\\n\\p{L}\\p{N}]?\\p{L}+") { return .qwen2 }
            throw FormatError.key(file, "pre_tokenizer.Split.pattern", "unrecognised split pattern \(p.prefix(80))…")
        }
        guard byteLevelRegex else { throw FormatError.key(file, "pre_tokenizer", "expected a ByteLevel pre-tokenizer with use_regex") }
        return digitsAlone ? .smollm : .gpt2
    }
}
