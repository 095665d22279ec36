// Reads SentencePiece-style BPE tokenizers: a GGUF with tokenizer.ggml.model "llama" (tokens, scores,
// token_type, add_space_prefix, as llama.cpp's convert_hf_to_gguf.py writes them), and the "▁" convention of a
// Hugging Face tokenizer.json (a Metaspace pre-tokenizer, or the normalizers Prepend("▁") + Replace(" ", "▁")).
import DTFormats

/// llama.cpp's token types (llama_token_type / gguf-py's TokenType).
enum GGUFTokenType {
    static let normal = 1, unknown = 2, control = 3, userDefined = 4, unused = 5, byte = 6
}

extension Tokenizer {
    /// tokenizer.ggml.model "llama": every token has a score and (optionally) a type; control, user-defined
    /// and unknown tokens are matched in text first (llama.cpp's special-token partition), byte tokens are
    /// type 6 (or, without token types, the tokens spelled <0xNN>).
    convenience init(llamaGGUF gguf: GGUFFile, tokens: [String]) throws {
        let file = gguf.path
        let meta = gguf.metadata
        guard let scoreValues = meta["tokenizer.ggml.scores"]?.array else {
            throw FormatError.key(file, "tokenizer.ggml.scores", "missing or not an array; tokenizer.ggml.model 'llama' (SentencePiece-style BPE) needs one score per token to merge by")
        }
        guard scoreValues.count == tokens.count else {
            throw FormatError.key(file, "tokenizer.ggml.scores", "expected \(tokens.count) scores (one per token of tokenizer.ggml.tokens), found \(scoreValues.count)")
        }
        let scores = try scoreValues.enumerated().map { i, v -> Float in
            guard let d = v.double else { throw FormatError.key(file, "tokenizer.ggml.scores[\(i)]", "expected a number") }
            return Float(d)
        }
        var types: [Int]?
        if let typeValues = meta["tokenizer.ggml.token_type"]?.array {
            guard typeValues.count == tokens.count else {
                throw FormatError.key(file, "tokenizer.ggml.token_type", "expected \(tokens.count) entries (one per token), found \(typeValues.count)")
            }
            types = try typeValues.enumerated().map { i, v in
                guard let t = v.int, (1...6).contains(t) else {
                    throw FormatError.key(file, "tokenizer.ggml.token_type[\(i)]", "expected a token type 1…6, found \(v)")
                }
                return t
            }
        }
        var special = Set<Int32>(), byteIds = Set<Int32>()
        for i in tokens.indices {
            if let types {
                if [GGUFTokenType.unknown, GGUFTokenType.control, GGUFTokenType.userDefined].contains(types[i]) { special.insert(Int32(i)) }
                if types[i] == GGUFTokenType.byte { byteIds.insert(Int32(i)) }
            } else if Self.byteValue(tokens[i]) != nil {
                byteIds.insert(Int32(i))
            }
        }
        var addSpacePrefix = true
        if let v = meta["tokenizer.ggml.add_space_prefix"] {
            guard let b = v.bool else { throw FormatError.key(file, "tokenizer.ggml.add_space_prefix", "expected a bool, found \(v)") }
            addSpacePrefix = b
        }
        let rule = SentencePieceRule(prefix: addSpacePrefix ? .everySegment : .none, splitsWords: false,
                                     decodeStripsLeadingSpace: addSpacePrefix)
        // llama.cpp's defaults for a SentencePiece vocabulary: <s> = 1, </s> = 2, add BOS.
        let bos = try Self.tokenId(meta, "tokenizer.ggml.bos_token_id", count: tokens.count, file: file) ?? (tokens.count > 1 ? 1 : nil)
        let eos = try Self.tokenId(meta, "tokenizer.ggml.eos_token_id", count: tokens.count, file: file) ?? (tokens.count > 2 ? 2 : nil)
        do {
            try self.init(sentencePiece: rule, tokens: tokens, mergeOrder: .scores(scores), byteTokenIds: byteIds, special: special,
                          bos: bos, eos: eos, pad: try Self.tokenId(meta, "tokenizer.ggml.padding_token_id", count: tokens.count, file: file),
                          addBos: meta["tokenizer.ggml.add_bos_token"]?.bool ?? true,
                          chatTemplate: meta["tokenizer.chat_template"]?.string, source: file)
        } catch var e as FormatError where e.file == file {   // the vocabulary's, merges' or a token's fault: say which key
            e.location = "key 'tokenizer.ggml.tokens'" + (e.location.isEmpty ? "" : ", \(e.location)")
            throw e
        }
    }

    /// A token id stored under `key`, checked against the vocabulary size.
    static func tokenId(_ meta: [String: GGUFValue], _ key: String, count: Int, file: String) throws -> Int32? {
        guard let v = meta[key] else { return nil }
        guard let n = v.int, n >= 0, n < count else {
            throw FormatError.key(file, key, "expected a token id below \(count)")
        }
        return Int32(n)
    }

    /// The "▁" convention of a tokenizer.json, or nil for a byte-level one. SentencePiece-style means
    /// `model.byte_fallback`, a Metaspace pre-tokenizer, or a Replace(" ", "▁") normalizer; it must then have
    /// byte fallback, and no other normalizer or pre-tokenizer step than those this tokenizer reproduces.
    static func sentencePieceRule(json: [String: Any], model: [String: Any], file: String) throws -> SentencePieceRule? {
        func steps(_ section: Any?, _ list: String) -> [[String: Any]] {
            guard let d = section as? [String: Any] else { return [] }
            return (d["type"] as? String) == "Sequence" ? ((d[list] as? [[String: Any]]) ?? []) : [d]
        }
        func name(_ step: [String: Any]) -> String { (step["type"] as? String).map { "'\($0)'" } ?? "without a type" }
        let mark = SentencePieceRule.mark
        let byteFallback = (model["byte_fallback"] as? Bool) ?? false
        var prepends = false, replacesSpaces = false, unsupported: [String: Any]?
        for step in steps(json["normalizer"], "normalizers") {
            let pattern = (step["pattern"] as? [String: Any])?["String"] as? String
            switch step["type"] as? String {
            case "Prepend" where step["prepend"] as? String == mark: prepends = true
            case "Replace" where pattern == " " && step["content"] as? String == mark: replacesSpaces = true
            default: unsupported = unsupported ?? step
            }
        }
        var metaspace: [String: Any]?
        let preSteps = steps(json["pre_tokenizer"], "pretokenizers")
        for step in preSteps where step["type"] as? String == "Metaspace" { metaspace = step }
        guard byteFallback || metaspace != nil || replacesSpaces else { return nil }
        guard byteFallback else {
            throw FormatError.key(file, "model.byte_fallback", "expected true: a ▁-marked (SentencePiece-style) BPE needs <0xNN> byte fallback")
        }
        if let step = unsupported {
            throw FormatError.key(file, "normalizer", "unsupported step \(name(step)) (expected only Prepend(\"▁\") and Replace(\" \", \"▁\"))")
        }
        if let other = preSteps.first(where: { $0["type"] as? String != "Metaspace" }) {
            throw FormatError.key(file, "pre_tokenizer", "unsupported step \(name(other)) in a SentencePiece-style tokenizer (expected Metaspace or none)")
        }
        var prefix: SentencePieceRule.Prefix = prepends ? .everySegment : .none
        var splits = false
        if let m = metaspace {
            guard (m["replacement"] as? String ?? mark) == mark else {
                throw FormatError.key(file, "pre_tokenizer.replacement", "expected \"▁\", found \(JSONFields.describe(m["replacement"]))")
            }
            // tokenizers < 0.19 wrote add_prefix_space instead of prepend_scheme.
            let scheme = (m["prepend_scheme"] as? String) ?? ((m["add_prefix_space"] as? Bool) == false ? "never" : "always")
            switch scheme {
            case "always": prefix = prepends ? .everySegment : .everyUnmarkedSegment
            case "first": prefix = prepends ? .everySegment : .firstUnmarkedSegment
            case "never": break
            default:
                throw FormatError.key(file, "pre_tokenizer.prepend_scheme", "expected first, always or never, found '\(scheme)'")
            }
            splits = (m["split"] as? Bool) ?? true
        } else if !replacesSpaces {
            throw FormatError.key(file, "normalizer", "byte_fallback BPE without a Metaspace pre-tokenizer or a Replace(\" \", \"▁\") normalizer (expected one of them)")
        }
        var strips = false
        for step in steps(json["decoder"], "decoders") {
            switch step["type"] as? String {
            case "Strip": strips = strips || (step["content"] as? String == " " && (JSONFields.integer(step["start"]) ?? 0) > 0)
            case "Metaspace": strips = strips || ((step["prepend_scheme"] as? String) ?? "always") != "never"
            default: break
            }
        }
        return SentencePieceRule(prefix: prefix, splitsWords: splits, decodeStripsLeadingSpace: strips)
    }
}
