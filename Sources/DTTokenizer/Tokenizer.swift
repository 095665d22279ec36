// BPE tokenizers. Special tokens are matched first; the text between them is then either
//   byte-level (GPT-2 family): pre-tokenized, each piece's UTF-8 bytes mapped to GPT-2's printable byte alphabet, or
//   SentencePiece-style (Llama-2, Mistral, Gemma, Phi-3): spaces marked "▁", one symbol per character with
//   <0xNN> byte tokens for characters outside the vocabulary (SentencePiece.swift),
// and the symbols are merged in rank order (a GGUF's SentencePiece scores become ranks).
import DTFormats
import Foundation

public enum ByteLevel {
    /// GPT-2's bytes_to_unicode: printable bytes map to themselves, the others to U+0100 onwards.
    public static let byteToScalar: [Unicode.Scalar] = {
        var table = [Unicode.Scalar](repeating: " ", count: 256)
        var printable = Set<Int>()
        for r in [33...126, 161...172, 174...255] { for b in r { printable.insert(b) } }
        var next = 256
        for b in 0..<256 {
            if printable.contains(b) { table[b] = Unicode.Scalar(UInt32(b))! } else { table[b] = Unicode.Scalar(UInt32(next))!; next += 1 }
        }
        return table
    }()

    public static let scalarToByte: [UInt32: UInt8] = {
        var d: [UInt32: UInt8] = [:]
        for (b, s) in byteToScalar.enumerated() { d[s.value] = UInt8(b) }
        return d
    }()
}

public final class Tokenizer {
    public let tokens: [String]
    public let tokenIds: [String: Int32]
    /// Tokens matched verbatim in text before BPE (control and user-defined tokens).
    public let specialTokens: Set<Int32>
    /// Byte-level BPE's pre-tokenizer (not used when `sentencePiece` is set).
    public let preTokenizer: PreTokenizer
    /// Set for SentencePiece-style BPE (▁ for spaces, <0xNN> byte fallback); nil for byte-level BPE.
    public let sentencePiece: SentencePieceRule?
    public let bosToken: Int32?
    public let eosToken: Int32?
    public let padToken: Int32?
    public let addBos: Bool
    public let ignoreMerges: Bool
    public let chatTemplate: String?
    /// (left id << 32 | right id) → the merge's rank (lower merges first) and the merged token.
    private let merges: [UInt64: (rank: Int32, merged: Int32)]
    /// The token of each byte: GPT-2's byte symbol (byte-level; -1 when missing) or <0xNN> (SentencePiece).
    private let byteTokens: [Int32]
    /// SentencePiece-style only: byte tokens' values, and the tokens that are one Unicode scalar (any type, as
    /// HF's BPE vocabulary lookup and llama.cpp's text_to_token take them).
    private let byteOfToken: [Int32: UInt8]
    private let scalarTokens: [UInt32: Int32]
    private let specialByFirstScalar: [UInt32: [(String, Int32)]]
    private var cache: [String: [Int32]] = [:]
    private let lock = NSLock()

    /// Everything already checked by the public initializers (here and in SentencePiece.swift).
    init(tokens: [String], tokenIds: [String: Int32], merges: [UInt64: (rank: Int32, merged: Int32)], byteTokens: [Int32],
         sentencePiece: SentencePieceRule?, byteOfToken: [Int32: UInt8], special: Set<Int32>, preTokenizer: PreTokenizer,
         bos: Int32?, eos: Int32?, pad: Int32?, addBos: Bool, ignoreMerges: Bool, chatTemplate: String?) {
        precondition(byteTokens.count == 256, "one token per byte value")
        self.tokens = tokens
        self.tokenIds = tokenIds
        self.merges = merges
        self.byteTokens = byteTokens
        self.sentencePiece = sentencePiece
        self.byteOfToken = byteOfToken
        var scalarTokens: [UInt32: Int32] = [:]
        if sentencePiece != nil {
            for (text, id) in tokenIds {
                var it = text.unicodeScalars.makeIterator()
                if let only = it.next(), it.next() == nil { scalarTokens[only.value] = id }
            }
        }
        self.scalarTokens = scalarTokens
        self.specialTokens = special
        var byFirst: [UInt32: [(String, Int32)]] = [:]
        for id in special {
            let t = tokens[Int(id)]
            guard let first = t.unicodeScalars.first else { continue }
            byFirst[first.value, default: []].append((t, id))
        }
        for k in byFirst.keys { byFirst[k]!.sort { $0.0.unicodeScalars.count > $1.0.unicodeScalars.count } }
        specialByFirstScalar = byFirst
        self.preTokenizer = preTokenizer
        bosToken = bos; eosToken = eos; padToken = pad
        self.addBos = addBos
        self.ignoreMerges = ignoreMerges
        self.chatTemplate = chatTemplate
    }

    /// Byte-level BPE (GPT-2's byte alphabet) with merges in rank order.
    public convenience init(tokens: [String], merges mergeList: [(String, String)], special: Set<Int32>, preTokenizer: PreTokenizer,
                            bos: Int32?, eos: Int32?, pad: Int32?, addBos: Bool, ignoreMerges: Bool = false, chatTemplate: String?,
                            source: String) throws {
        let ids = Self.idTable(tokens)
        // A byte whose symbol is missing from the vocabulary (e.g. control bytes never seen in training) has
        // no token: like HF tokenizers without an unk token, it produces none (-1 marks it).
        let byteTokens = (0..<256).map { ids[String(ByteLevel.byteToScalar[$0])] ?? -1 }
        guard byteTokens.filter({ $0 >= 0 }).count >= 128 else {
            throw FormatError(file: source, location: "vocabulary", "lacks most byte-level symbols (expected a GPT-2 byte-level BPE vocabulary)")
        }
        self.init(tokens: tokens, tokenIds: ids, merges: try Self.rankedMerges(mergeList, ids: ids, source: source),
                  byteTokens: byteTokens, sentencePiece: nil, byteOfToken: [:], special: special, preTokenizer: preTokenizer,
                  bos: bos, eos: eos, pad: pad, addBos: addBos, ignoreMerges: ignoreMerges, chatTemplate: chatTemplate)
    }

    /// Token text → id (the first id of a text given twice).
    static func idTable(_ tokens: [String]) -> [String: Int32] {
        var ids: [String: Int32] = [:]
        ids.reserveCapacity(tokens.count)
        for (i, t) in tokens.enumerated() where ids[t] == nil { ids[t] = Int32(i) }
        return ids
    }

    /// The merge table of a merge list in rank order (the first of a repeated pair counts).
    static func rankedMerges(_ mergeList: [(String, String)], ids: [String: Int32], source: String) throws -> [UInt64: (rank: Int32, merged: Int32)] {
        guard mergeList.count < 1 << 24 else {
            throw FormatError(file: source, location: "merges", "\(mergeList.count) merges (at most \(1 << 24 - 1) are supported)")
        }
        var merges: [UInt64: (rank: Int32, merged: Int32)] = [:]
        merges.reserveCapacity(mergeList.count)
        for (rank, (a, b)) in mergeList.enumerated() {
            guard let ia = ids[a], let ib = ids[b], let im = ids[a + b] else {
                throw FormatError(file: source, location: "merge \(rank)", "'\(a) \(b)' uses tokens missing from the vocabulary")
            }
            let key = pairKey(ia, ib)
            if merges[key] == nil { merges[key] = (Int32(rank), im) }
        }
        return merges
    }

    static func pairKey(_ left: Int32, _ right: Int32) -> UInt64 {
        UInt64(UInt32(bitPattern: left)) << 32 | UInt64(UInt32(bitPattern: right))
    }

    public var vocabularySize: Int { tokens.count }

    /// Token ids of `text`. Special-token text (e.g. "<|im_start|>") becomes its id when `parseSpecial`.
    public func encode(_ text: String, addSpecial: Bool = false, parseSpecial: Bool = true) -> [Int32] {
        var out: [Int32] = []
        if addSpecial, addBos, let bos = bosToken { out.append(bos) }
        let scalars = Array(text.unicodeScalars)
        var segmentStart = 0
        var i = 0
        func flush(_ end: Int) {
            guard end > segmentStart else { return }
            var view = String.UnicodeScalarView()
            view.append(contentsOf: scalars[segmentStart..<end])
            let pieces = sentencePiece.map { $0.pieces(of: view, atTextStart: segmentStart == 0) } ?? preTokenizer.split(String(view))
            for piece in pieces { out.append(contentsOf: bpe(piece)) }
        }
        while i < scalars.count {
            if parseSpecial, let candidates = specialByFirstScalar[scalars[i].value],
               let (text, id) = candidates.first(where: { matches($0.0, scalars, at: i) }) {
                flush(i)
                out.append(id)
                i += text.unicodeScalars.count
                segmentStart = i
                continue
            }
            i += 1
        }
        flush(scalars.count)
        return out
    }

    private func matches(_ token: String, _ scalars: [Unicode.Scalar], at i: Int) -> Bool {
        var j = i
        for s in token.unicodeScalars {
            guard j < scalars.count, scalars[j] == s else { return false }
            j += 1
        }
        return true
    }

    /// BPE of one pre-tokenized piece (cached for short pieces).
    func bpe(_ piece: String) -> [Int32] {
        let cacheable = piece.utf8.count <= 256
        if cacheable {
            lock.lock()
            if let hit = cache[piece] { lock.unlock(); return hit }
            lock.unlock()
        }
        var symbols: [Int32]
        var mapped = String.UnicodeScalarView()
        if ignoreMerges && sentencePiece == nil { for b in piece.utf8 { mapped.append(ByteLevel.byteToScalar[Int(b)]) } }
        if ignoreMerges, let whole = tokenIds[sentencePiece == nil ? String(mapped) : piece] {
            symbols = [whole]
        } else if sentencePiece != nil {
            symbols = mergeAll(sentencePieceSymbols(piece))
        } else {
            symbols = mergeAll(piece.utf8.map { byteTokens[Int($0)] })
            symbols.removeAll { $0 < 0 }
        }
        if cacheable {
            lock.lock()
            if cache.count > 100_000 { cache.removeAll(keepingCapacity: true) }
            cache[piece] = symbols
            lock.unlock()
        }
        return symbols
    }

    /// SentencePiece-style initial symbols: one per character, the <0xNN> tokens of its UTF-8 bytes for a
    /// character that is not a token (byte fallback).
    func sentencePieceSymbols(_ piece: String) -> [Int32] {
        var symbols: [Int32] = []
        symbols.reserveCapacity(piece.unicodeScalars.count)
        for s in piece.unicodeScalars {
            if let id = scalarTokens[s.value] { symbols.append(id); continue }
            for b in String(s).utf8 { symbols.append(byteTokens[Int(b)]) }
        }
        return symbols
    }

    /// Applies merges to byte symbols in rank order, the lowest-ranked pair first and the leftmost of equal
    /// ranks first, as HF tokenizers' `Word::merge_all` does: symbols form a linked list, candidate pairs a
    /// min-heap keyed by (rank, position); an entry whose pair has changed since it was pushed is skipped.
    /// O(n log n) in the piece length n (the textbook loop, rescanning all pairs per merge, is O(n²)).
    func mergeAll(_ initial: [Int32]) -> [Int32] {
        let n = initial.count
        guard n > 1 else { return initial }
        var symbol = initial                                   // (n) token id; merged-away positions keep stale ids
        var next = Array(1...n)                                 // (n) next live position, n = none
        var previous = Array(-1..<(n - 1))                      // (n) previous live position, -1 = none
        var alive = [Bool](repeating: true, count: n)
        func pair(_ left: Int32, _ right: Int32) -> (rank: Int32, merged: Int32)? { merges[Self.pairKey(left, right)] }
        /// Heap entry: rank in the high 24 bits, position of the left symbol in the low 40 (so ties go left).
        func entry(_ rank: Int32, _ position: Int) -> UInt64 { UInt64(rank) << 40 | UInt64(position) }
        var heap = MinHeap()
        heap.reserve(n)
        for i in 0..<(n - 1) {
            if let m = pair(symbol[i], symbol[i + 1]) { heap.append(entry(m.rank, i)) }
        }
        heap.heapify()
        while let top = heap.popMin() {
            let at = Int(top & (1 << 40 - 1)), topRank = Int32(top >> 40)
            let right = next[at]
            guard alive[at], right < n else { continue }
            // A pair only changes by growing (a merge), so the same rank means the pushed pair still stands here.
            guard let merge = pair(symbol[at], symbol[right]), merge.rank == topRank else { continue }
            symbol[at] = merge.merged
            alive[right] = false
            let after = next[right]
            next[at] = after
            if after < n { previous[after] = at }
            let before = previous[at]
            if before >= 0, let m = pair(symbol[before], symbol[at]) { heap.push(entry(m.rank, before)) }
            if after < n, let m = pair(symbol[at], symbol[after]) { heap.push(entry(m.rank, at)) }
        }
        var out: [Int32] = []
        var i = 0
        while i < n { out.append(symbol[i]); i = next[i] }
        return out
    }

    /// Raw bytes of a token (special tokens give their text).
    public func bytes(of id: Int32) -> [UInt8] {
        guard id >= 0, Int(id) < tokens.count else { return [] }
        let t = tokens[Int(id)]
        if specialTokens.contains(id) { return Array(t.utf8) }
        if sentencePiece != nil {
            if let b = byteOfToken[id] { return [b] }
            return Array(t.replacingOccurrences(of: SentencePieceRule.mark, with: " ").utf8)
        }
        var out: [UInt8] = []
        for s in t.unicodeScalars {
            if let b = ByteLevel.scalarToByte[s.value] { out.append(b) } else { out.append(contentsOf: Array(String(s).utf8)) }
        }
        return out
    }

    /// Text of `ids` (invalid UTF-8 from a cut multi-byte character becomes U+FFFD).
    public func decode(_ ids: [Int32], skipSpecial: Bool = false) -> String {
        var bytes: [UInt8] = []
        for id in ids where !(skipSpecial && specialTokens.contains(id)) { bytes.append(contentsOf: self.bytes(of: id)) }
        // HF's Strip(" ", 1, 0) decoder (llama.cpp: add_space_prefix) takes back the "▁" put before the text.
        if sentencePiece?.decodeStripsLeadingSpace == true, bytes.first == 0x20 { bytes.removeFirst() }
        return String(decoding: bytes, as: UTF8.self)
    }
}

/// Turns a stream of token ids into text pieces, holding back bytes of an unfinished UTF-8 character.
public struct StreamingDecoder {
    let tokenizer: Tokenizer
    var pending: [UInt8] = []
    public init(_ tokenizer: Tokenizer) { self.tokenizer = tokenizer }

    public mutating func push(_ id: Int32) -> String {
        pending.append(contentsOf: tokenizer.bytes(of: id))
        var validEnd = pending.count
        // Keep back an incomplete trailing sequence (at most 3 bytes).
        for back in 1...min(3, pending.count) {
            let b = pending[pending.count - back]
            if b & 0xC0 == 0x80 { continue }
            let need = b >= 0xF0 ? 4 : b >= 0xE0 ? 3 : b >= 0xC0 ? 2 : 1
            if need > back { validEnd = pending.count - back }
            break
        }
        let text = String(decoding: pending[..<validEnd], as: UTF8.self)
        pending.removeFirst(validEnd)
        return text
    }
}
