// The Hugging Face tokenizer files of a GGUF's byte-level BPE tokenizer (merge --format hf from a GGUF
// base): tokenizer.json (vocabulary, merges, added tokens, the family's pre-tokenizer), tokenizer_config.json,
// chat_template.jinja (as transformers 5 saves it) and generation_config.json. Token types follow
// llama.cpp's converter in reverse: CONTROL (3) ↔ special added token, USER_DEFINED (4) ↔ non-special.
import DTFormats
import Foundation

public enum HFTokenizerExport {
    static let llama3Split = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}{1,3}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"
    static let qwen2Split = "(?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\\r\\n\\p{L}\\p{N}]?\\p{L}+|\\p{N}| ?[^\\s\\p{L}\\p{N}]+[\\r\\n]*|\\s*[\\r\\n]+|\\s+(?!\\S)|\\s+"

    static func byteLevel(regex: Bool) -> [String: Any] {
        ["type": "ByteLevel", "add_prefix_space": false, "trim_offsets": true, "use_regex": regex]
    }

    /// tokenizer.json's pre_tokenizer for a family, as the family's own tokenizer.json has it.
    static func preTokenizer(_ family: PreTokenizerFamily) -> [String: Any] {
        func split(_ pattern: String) -> [String: Any] {
            ["type": "Split", "pattern": ["Regex": pattern], "behavior": "Isolated", "invert": false]
        }
        switch family {
        case .gpt2: return byteLevel(regex: true)
        case .smollm: return ["type": "Sequence", "pretokenizers": [["type": "Digits", "individual_digits": true], byteLevel(regex: true)]]
        case .llama3: return ["type": "Sequence", "pretokenizers": [split(llama3Split), byteLevel(regex: false)]]
        case .qwen2: return ["type": "Sequence", "pretokenizers": [split(qwen2Split), byteLevel(regex: false)]]
        }
    }

    public static func files(gguf g: GGUFFile) throws -> [(String, Data)] {
        let meta = g.metadata
        guard meta["tokenizer.ggml.model"]?.string == "gpt2", let tokenValues = meta["tokenizer.ggml.tokens"]?.array else {
            throw FormatError.key(g.path, "tokenizer.ggml.model", "only byte-level BPE (gpt2) tokenizers can be written as tokenizer.json")
        }
        let tokens = tokenValues.map { $0.string ?? "" }
        let types = meta["tokenizer.ggml.token_type"]?.array?.map { $0.int ?? 1 } ?? []
        let family = try Tokenizer.family(gguf: g)
        var vocab: [String: Int] = [:]
        var added: [[String: Any]] = []
        for (i, t) in tokens.enumerated() {
            vocab[t] = vocab[t] ?? i
            let type = i < types.count ? types[i] : 1
            if type == 3 || type == 4 {
                added.append(["id": i, "content": t, "single_word": false, "lstrip": false, "rstrip": false,
                              "normalized": false, "special": type == 3])
            }
        }
        let merges = (meta["tokenizer.ggml.merges"]?.array ?? []).map { $0.string ?? "" }
        func token(_ key: String) -> (id: Int, text: String)? {
            guard let id = meta[key]?.int, id >= 0, id < tokens.count else { return nil }
            return (id, tokens[id])
        }
        let bos = token("tokenizer.ggml.bos_token_id"), eos = token("tokenizer.ggml.eos_token_id")
        let pad = token("tokenizer.ggml.padding_token_id")
        let addBos = meta["tokenizer.ggml.add_bos_token"]?.bool ?? false
        var postProcessor: [String: Any] = ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": false, "use_regex": true]
        if addBos, let bos {
            postProcessor = ["type": "TemplateProcessing",
                             "single": [["SpecialToken": ["id": bos.text, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]]],
                             "pair": [["SpecialToken": ["id": bos.text, "type_id": 0]], ["Sequence": ["id": "A", "type_id": 0]],
                                      ["SpecialToken": ["id": bos.text, "type_id": 1]], ["Sequence": ["id": "B", "type_id": 1]]],
                             "special_tokens": [bos.text: ["id": bos.text, "ids": [bos.id], "tokens": [bos.text]]]]
        }
        let tokenizer: [String: Any] = [
            "version": "1.0", "truncation": NSNull(), "padding": NSNull(), "added_tokens": added,
            "normalizer": family == .qwen2 ? ["type": "NFC"] as [String: Any] : NSNull(),
            "pre_tokenizer": preTokenizer(family), "post_processor": postProcessor,
            "decoder": ["type": "ByteLevel", "add_prefix_space": true, "trim_offsets": true, "use_regex": true],
            "model": ["type": "BPE", "dropout": NSNull(), "unk_token": NSNull(), "continuing_subword_prefix": NSNull(),
                      "end_of_word_suffix": NSNull(), "fuse_unk": false, "byte_fallback": false, "ignore_merges": family == .llama3,
                      "vocab": vocab, "merges": merges],
        ]
        var config: [String: Any] = ["tokenizer_class": "PreTrainedTokenizerFast", "add_bos_token": addBos, "add_eos_token": false,
                                     "clean_up_tokenization_spaces": false, "model_max_length": meta["\(meta["general.architecture"]?.string ?? "").context_length"]?.int ?? 2048]
        if let bos { config["bos_token"] = bos.text }
        if let eos { config["eos_token"] = eos.text }
        if let pad { config["pad_token"] = pad.text }
        var generation: [String: Any] = ["_from_model_config": true]
        if let bos { generation["bos_token_id"] = bos.id }
        if let eos { generation["eos_token_id"] = eos.id }
        if let pad { generation["pad_token_id"] = pad.id }
        let json: (Any) throws -> Data = { try JSONSerialization.data(withJSONObject: $0, options: [.prettyPrinted, .sortedKeys]) }
        var out = [("tokenizer.json", try json(tokenizer)), ("tokenizer_config.json", try json(config)),
                   ("generation_config.json", try json(generation))]
        if let template = meta["tokenizer.chat_template"]?.string { out.append(("chat_template.jinja", Data(template.utf8))) }
        return out
    }
}
