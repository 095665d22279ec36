// SentencePiece-style BPE (Llama-2, Mistral, Gemma, Phi-3): how text becomes "▁"-marked pieces, and the
// merge table, built either from tokenizer.json's ranked merges or from a GGUF's SentencePiece scores.
//
//   text segment (between special tokens) ──▁ prefix, " " → "▁"──▶ marked text ──split before "▁"?──▶ pieces
//   piece ──one symbol per character, <0xNN> byte tokens for a character outside the vocabulary──▶ merges
//
// Scores become ranks: llama.cpp's llm_tokenizer_spm repeatedly merges the adjacent pair whose concatenation is
// a token with the highest score, the leftmost among equal scores. That is a rank-ordered merge over the table
// "(left token, right token) → their concatenation" for every way of cutting each token into two tokens, with
// rank = position of the token's score among the distinct scores, highest first.
import DTFormats

/// How a SentencePiece-style tokenizer marks spaces before BPE and takes the mark back when decoding.
public struct SentencePieceRule: Sendable, Equatable {
    /// U+2581 LOWER ONE EIGHTH BLOCK, SentencePiece's space.
    public static let mark = "\u{2581}"
    static let markScalar: Unicode.Scalar = "\u{2581}"

    public enum Prefix: String, Sendable {
        /// No "▁" is added (Metaspace prepend_scheme "never"; a Replace-only normalizer as in Gemma).
        case none
        /// "▁" before every segment, even one that starts with a space: HF's Prepend("▁") normalizer (Llama-2's
        /// tokenizer.json), llama.cpp's add_space_prefix (a space before the text and after each special token).
        case everySegment
        /// "▁" before every segment that does not already start with one (Metaspace prepend_scheme "always").
        case everyUnmarkedSegment
        /// "▁" before the segment at the very start of the text unless it starts with one (Metaspace "first").
        case firstUnmarkedSegment
    }

    public var prefix: Prefix
    /// Metaspace `split`: pieces start at each "▁", so no merge crosses a word boundary.
    public var splitsWords: Bool
    /// Decoding drops one leading space (HF's Strip(" ", 1, 0) decoder; llama.cpp with add_space_prefix).
    public var decodeStripsLeadingSpace: Bool

    public init(prefix: Prefix, splitsWords: Bool, decodeStripsLeadingSpace: Bool) {
        self.prefix = prefix
        self.splitsWords = splitsWords
        self.decodeStripsLeadingSpace = decodeStripsLeadingSpace
    }

    /// The pieces BPE sees for one segment of text between special tokens.
    func pieces(of segment: String.UnicodeScalarView, atTextStart: Bool) -> [String] {
        let startsMarked = segment.first == " " || segment.first == Self.markScalar
        let addsMark: Bool
        switch prefix {
        case .none: addsMark = false
        case .everySegment: addsMark = true
        case .everyUnmarkedSegment: addsMark = !startsMarked
        case .firstUnmarkedSegment: addsMark = atTextStart && !startsMarked
        }
        var pieces: [String] = []
        var piece = String.UnicodeScalarView()
        if addsMark { piece.append(Self.markScalar) }
        for s in segment {
            let marked = s == " " ? Self.markScalar : s
            if splitsWords, marked == Self.markScalar, !piece.isEmpty {
                pieces.append(String(piece))
                piece = String.UnicodeScalarView()
            }
            piece.append(marked)
        }
        if !piece.isEmpty { pieces.append(String(piece)) }
        return pieces
    }
}

extension Tokenizer {
    /// The order in which a SentencePiece-style vocabulary merges symbols.
    public enum MergeOrder {
        /// tokenizer.json's merges, lowest rank first.
        case ranks([(String, String)])
        /// A GGUF's tokenizer.ggml.scores, one per token: the highest-scoring concatenation first.
        case scores([Float])
    }

    /// SentencePiece-style BPE. `byteTokenIds` are the byte-fallback tokens, whose text must be "<0xNN>";
    /// all 256 byte values must have one. `source` names the file in errors.
    public convenience init(sentencePiece rule: SentencePieceRule, tokens: [String], mergeOrder: MergeOrder, byteTokenIds: Set<Int32>,
                            special: Set<Int32>, bos: Int32?, eos: Int32?, pad: Int32?, addBos: Bool, ignoreMerges: Bool = false,
                            chatTemplate: String?, source: String) throws {
        let ids = Self.idTable(tokens)
        var byteOfToken: [Int32: UInt8] = [:]
        var byteTokens = [Int32](repeating: -1, count: 256)
        for id in byteTokenIds.sorted() {
            guard id >= 0, Int(id) < tokens.count, let b = Self.byteValue(tokens[Int(id)]) else {
                let text = id >= 0 && Int(id) < tokens.count ? tokens[Int(id)] : "(no such token)"
                throw FormatError(file: source, location: "vocabulary", "byte token \(id) is '\(text)' (expected <0xNN> with two hex digits)")
            }
            byteOfToken[id] = b
            if byteTokens[Int(b)] < 0 { byteTokens[Int(b)] = id }
        }
        if let missing = byteTokens.firstIndex(of: -1) {
            let found = byteTokens.filter { $0 >= 0 }.count
            throw FormatError(file: source, location: "vocabulary", "byte-fallback vocabulary lacks \(Self.byteText(UInt8(missing))) (\(found) of 256 byte tokens <0x00>…<0xFF> found; expected all of them)")
        }
        let merges: [UInt64: (rank: Int32, merged: Int32)]
        switch mergeOrder {
        case .ranks(let list): merges = try Self.rankedMerges(list, ids: ids, source: source)
        case .scores(let scores): merges = try Self.scoredMerges(tokens: tokens, ids: ids, scores: scores, source: source)
        }
        self.init(tokens: tokens, tokenIds: ids, merges: merges, byteTokens: byteTokens, sentencePiece: rule,
                  byteOfToken: byteOfToken, special: special, preTokenizer: PreTokenizer(.gpt2), bos: bos, eos: eos, pad: pad,
                  addBos: addBos, ignoreMerges: ignoreMerges, chatTemplate: chatTemplate)
    }

    /// "<0x0A>" → 10 (either case of hex digit, as HF's ByteFallback decoder and llama.cpp accept).
    static func byteValue(_ text: String) -> UInt8? {
        let u = Array(text.utf8)
        guard u.count == 6, u[0] == UInt8(ascii: "<"), u[1] == UInt8(ascii: "0"), u[2] == UInt8(ascii: "x"), u[5] == UInt8(ascii: ">") else { return nil }
        return UInt8(String(decoding: u[3...4], as: UTF8.self), radix: 16)
    }

    static func byteText(_ b: UInt8) -> String {
        let hex = String(b, radix: 16, uppercase: true)
        return "<0x\(hex.count == 1 ? "0" + hex : hex)>"
    }

    /// Tokens longer than this (in characters) are left out of the merge table: cutting a token of n characters
    /// every way costs O(n²), which a hostile file could make arbitrarily slow; the longest tokens of real vocabularies
    /// (runs of spaces or punctuation) are far shorter.
    static let maxMergedTokenLength = 1024

    /// The merge table llama.cpp's score-ordered merge amounts to (see the file header).
    static func scoredMerges(tokens: [String], ids: [String: Int32], scores: [Float], source: String) throws -> [UInt64: (rank: Int32, merged: Int32)] {
        precondition(scores.count == tokens.count, "one score per token")
        guard tokens.count < 1 << 24 else {
            throw FormatError(file: source, location: "vocabulary", "\(tokens.count) tokens (at most \(1 << 24 - 1) are supported)")
        }
        try FormatError.requireFinite(scores, file: source, key: "tokenizer.ggml.scores")
        let distinct = Set(scores).sorted(by: >)
        var rankOfScore: [Float: Int32] = [:]
        for (rank, score) in distinct.enumerated() { rankOfScore[score] = Int32(rank) }
        var merges: [UInt64: (rank: Int32, merged: Int32)] = [:]
        for (text, merged) in ids {
            let scalars = Array(text.unicodeScalars)
            guard scalars.count > 1, scalars.count <= maxMergedTokenLength else { continue }
            let rank = rankOfScore[scores[Int(merged)]]!
            var left = String.UnicodeScalarView()
            for cut in 1..<scalars.count {
                left.append(scalars[cut - 1])
                var right = String.UnicodeScalarView()
                right.append(contentsOf: scalars[cut...])
                guard let l = ids[String(left)], let r = ids[String(right)] else { continue }
                merges[pairKey(l, r)] = (rank, merged)
            }
        }
        return merges
    }
}
