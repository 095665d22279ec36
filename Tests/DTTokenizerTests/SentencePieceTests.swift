// SentencePiece-style BPE (byte fallback, "▁" spaces) against Hugging Face `tokenizers`: fixtures in Fixtures/spm
// from scripts/make_spm_tokenizer_fixtures.py — one vocabulary as a Llama-2-style tokenizer.json (Prepend + Replace
// normalizer), as a Metaspace tokenizer.json, and as a llama.cpp GGUF vocabulary (scores, token types).
import DTFormats
import DTTokenizer
import Foundation
import TestSupport
import XCTest

final class SentencePieceTests: XCTestCase {
    struct Case {
        let text: String
        let ids: [Int32], idsWithSpecial: [Int32], metaspaceIds: [Int32]
        let decoded: String, decodedSkipSpecial: String
    }

    static func fixture(_ name: String) -> String {
        Bundle.module.path(forResource: "Fixtures/spm/\(name)", ofType: nil)!
    }

    static let golden: [String: Any] = {
        let data = try! Data(contentsOf: URL(fileURLWithPath: fixture("cases.json")))
        return try! JSONSerialization.jsonObject(with: data) as! [String: Any]
    }()

    static func ids(_ value: Any?) -> [Int32] { (value as! [NSNumber]).map { Int32($0.intValue) } }

    static let cases: [Case] = (golden["cases"] as! [[String: Any]]).map { c in
        Case(text: c["text"] as! String, ids: ids(c["ids"]), idsWithSpecial: ids(c["ids_with_special"]),
             metaspaceIds: ids(c["metaspace_ids"]), decoded: c["decoded"] as! String,
             decodedSkipSpecial: c["decoded_skip_special"] as! String)
    }

    static let llama2 = try! Tokenizer(tokenizerJSON: fixture("llama2/tokenizer.json"))
    static let gguf = try! Tokenizer(gguf: GGUFFile(path: fixture("llama2.gguf.bin")))

    /// Invariant: a Llama-2-style tokenizer.json (Prepend("▁") + Replace normalizer, "a b" merges, byte
    /// fallback) gives HF's ids for every text — spaces, newlines, tabs, digits, accents, CJK, emoji, bytes
    /// outside the vocabulary, chat markup — and HF's ids with <s> when special tokens are added.
    func testLlama2TokenizerJSONMatchesHuggingFace() {
        XCTAssertGreaterThanOrEqual(Self.cases.count, 25)
        XCTAssertEqual(Self.llama2.vocabularySize, Self.golden["vocab_size"] as? Int)
        for c in Self.cases {
            XCTAssertEqual(Self.llama2.encode(c.text), c.ids, "text: \(String(reflecting: c.text))")
            XCTAssertEqual(Self.llama2.encode(c.text, addSpecial: true), c.idsWithSpecial, "text: \(String(reflecting: c.text))")
        }
    }

    /// Invariant: a Metaspace tokenizer.json (prepend_scheme "first", split, [left, right] merges) gives HF's ids.
    func testMetaspaceTokenizerJSONMatchesHuggingFace() throws {
        let tok = try Tokenizer(tokenizerJSON: Self.fixture("metaspace/tokenizer.json"))
        XCTAssertEqual(tok.sentencePiece, SentencePieceRule(prefix: .firstUnmarkedSegment, splitsWords: true, decodeStripsLeadingSpace: true))
        for c in Self.cases { XCTAssertEqual(tok.encode(c.text), c.metaspaceIds, "text: \(String(reflecting: c.text))") }
    }

    /// Invariant: every Metaspace prepend_scheme (first, always, never) × split (true, false), and ignore_merges,
    /// gives HF's ids: where "▁" is added, where pieces are cut, and whole-piece vocabulary hits.
    func testMetaspaceOptionsMatchHuggingFace() throws {
        let base = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.fixture("metaspace/tokenizer.json")))) as? [String: Any])
        let variants = try XCTUnwrap(Self.golden["metaspace_variants"] as? [[String: Any]])
        XCTAssertEqual(variants.count, 9)
        let path = temporaryDirectory() + "/tokenizer.json"
        for v in variants {
            var json = base
            json["pre_tokenizer"] = v["pre_tokenizer"]
            var model = try XCTUnwrap(json["model"] as? [String: Any])
            model["ignore_merges"] = v["ignore_merges"]
            json["model"] = model
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
            let tok = try Tokenizer(tokenizerJSON: path)
            let expected = (v["ids"] as! [Any]).map(Self.ids)
            for (c, ids) in zip(Self.cases, expected) {
                XCTAssertEqual(tok.encode(c.text), ids, "\(v["pre_tokenizer"]!) ignore_merges \(v["ignore_merges"]!): \(String(reflecting: c.text))")
            }
        }
    }

    /// Invariant: the GGUF form (tokenizer.ggml.model "llama", scores −id) merging by highest score, leftmost on
    /// ties, as llama.cpp's llm_tokenizer_spm does, gives HF's rank-ordered ids, and adds <s> by default.
    func testGGUFScoresMatchHuggingFaceRanks() {
        let tok = Self.gguf
        XCTAssertEqual(tok.sentencePiece, SentencePieceRule(prefix: .everySegment, splitsWords: false, decodeStripsLeadingSpace: true))
        XCTAssertEqual(tok.bosToken, Int32(Self.golden["bos_token_id"] as! Int))
        XCTAssertEqual(tok.eosToken, Int32(Self.golden["eos_token_id"] as! Int))
        XCTAssertTrue(tok.addBos)
        for c in Self.cases {
            XCTAssertEqual(tok.encode(c.text), c.ids, "text: \(String(reflecting: c.text))")
            XCTAssertEqual(tok.encode(c.text, addSpecial: true), c.idsWithSpecial, "text: \(String(reflecting: c.text))")
        }
    }

    /// Invariant: with all scores equal (gguf-py's LlamaHfVocab writes −1000 for every token) only the tie-break
    /// orders merges, and it is llama.cpp's — the leftmost pair first: ids equal llama.cpp's on the same file.
    func testEqualScoresMergeLeftmostFirstAsLlamaCpp() throws {
        let checked = try XCTUnwrap(Self.golden["llama_cpp"] as? [String: Any], "fixtures made without --llama-cpp")
        let expected = try XCTUnwrap(checked["flat_score_ids"] as? [Any]).map(Self.ids)
        let g = try GGUFFile(path: Self.fixture("llama2.gguf.bin"))
        let n = try XCTUnwrap(g.metadata["tokenizer.ggml.tokens"]?.array?.count)
        let path = try writeGGUF(g, replacing: ["tokenizer.ggml.scores": .array(.f32(Array(repeating: -1000, count: n)))])
        let flat = try Tokenizer(gguf: GGUFFile(path: path))
        var differFromHF = 0
        for (c, ids) in zip(Self.cases, expected) {
            XCTAssertEqual(flat.encode(c.text), ids, "text: \(String(reflecting: c.text))")
            if ids != c.ids { differFromHF += 1 }
        }
        XCTAssertGreaterThan(differFromHF, 0, "flat scores must change some ids, or this checks nothing")
    }

    /// Invariant: score order and rank order agree beyond the fixture texts too — the GGUF and the tokenizer.json
    /// give the same ids on seeded random texts mixing words, space runs, punctuation and characters outside the
    /// vocabulary; and without add_space_prefix the GGUF matches HF's Metaspace "never" (no split).
    func testScoreOrderEqualsRankOrderOnRandomTexts() throws {
        var rng = SeededRandom(seed: 21)
        let alphabet = ["the", " ", "  ", "    ", "a", "e", "in", "ing", "s", "t", "th", "he", "re", "on", "\n", "\t", ".", ",", "1", "00",
                        "é", "ü", "ß", "中", "学", "🌍", "j", "R", "#", "<", "▁", "<s>", "[INST]", "x", "q", "u", "ck", "qu"]
        for i in 0..<400 {
            let text = (0..<(1 + Int(rng.next() % 60))).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }.joined()
            XCTAssertEqual(Self.gguf.encode(text), Self.llama2.encode(text), "case \(i): \(String(reflecting: text))")
        }
        let g = try GGUFFile(path: Self.fixture("llama2.gguf.bin"))
        let path = try writeGGUF(g, replacing: ["tokenizer.ggml.add_space_prefix": .bool(false)])
        let noPrefix = try Tokenizer(gguf: GGUFFile(path: path))
        let variants = try XCTUnwrap(Self.golden["metaspace_variants"] as? [[String: Any]])
        let never = try XCTUnwrap(variants.first {
            let pre = $0["pre_tokenizer"] as! [String: Any]
            return pre["prepend_scheme"] as? String == "never" && pre["split"] as? Bool == false && $0["ignore_merges"] as? Bool == false
        })
        for (c, ids) in zip(Self.cases, (never["ids"] as! [Any]).map(Self.ids)) {
            XCTAssertEqual(noPrefix.encode(c.text), ids, "add_space_prefix false: \(String(reflecting: c.text))")
        }
    }

    /// Invariant: decoding gives HF's text — "▁" → space, <0xNN> runs → their UTF-8 character, one leading space
    /// (the prepended "▁") dropped, special tokens kept or skipped — from tokenizer.json and GGUF alike; streamed
    /// pieces join to the same text without the strip (a continuation keeps its space).
    func testDecodeMatchesHuggingFace() {
        for tok in [Self.llama2, Self.gguf] {
            for c in Self.cases {
                XCTAssertEqual(tok.decode(c.ids), c.decoded, "text: \(String(reflecting: c.text))")
                XCTAssertEqual(tok.decode(c.ids, skipSpecial: true), c.decodedSkipSpecial, "text: \(String(reflecting: c.text))")
            }
        }
        let text = "Grüße 🌍 日本語 — ok"
        var stream = StreamingDecoder(Self.gguf)
        let pieces = Self.gguf.encode(text).map { stream.push($0) }
        XCTAssertEqual(pieces.joined(), " " + text)
        XCTAssertFalse(pieces.joined().contains("\u{FFFD}"), "no piece may end inside a byte-fallback character")
    }

    /// Writes `g`'s metadata with some keys replaced (a nil value removes the key) to a new GGUF without tensors.
    func writeGGUF(_ g: GGUFFile, replacing: [String: GGUFMetadataValue?]) throws -> String {
        var entries = g.metadataKeys.filter { replacing[$0] == nil }.compactMap { g.copiedEntry($0) }
        for (key, value) in replacing.sorted(by: { $0.key < $1.key }) { if let value { entries.append(.value(key, value)) } }
        let path = temporaryDirectory() + "/tokenizer.gguf"
        let w = try GGUFWriter(path: path, metadata: entries, tensors: [], overwrite: true)
        try w.finish()
        return path
    }

    /// Invariant: a broken SentencePiece GGUF vocabulary is an error naming the file, the key and what was
    /// expected — never a crash or a silently wrong tokenizer.
    func testMalformedGGUFIsRefused() throws {
        let g = try GGUFFile(path: Self.fixture("llama2.gguf.bin"))
        let n = try XCTUnwrap(g.metadata["tokenizer.ggml.tokens"]?.array?.count)
        let types = try XCTUnwrap(g.metadata["tokenizer.ggml.token_type"]?.array?.map { Int32($0.int!) })
        let tokenA = try XCTUnwrap(g.metadata["tokenizer.ggml.tokens"]?.array?.firstIndex(of: .string("a")))
        var aAsByte = types; aAsByte[tokenA] = 6
        var nanScores = [Float](repeating: -1, count: n); nanScores[5] = .nan
        let cases: [([String: GGUFMetadataValue?], String)] = [
            (["tokenizer.ggml.scores": nil], "tokenizer.ggml.scores"),
            (["tokenizer.ggml.scores": .array(.f32([0, 1]))], "expected \(n) scores"),
            (["tokenizer.ggml.scores": .array(.f32(nanScores))], "value 5 of \(n) is nan"),
            (["tokenizer.ggml.scores": .array(.string(Array(repeating: "x", count: n)))], "tokenizer.ggml.scores[0]"),
            (["tokenizer.ggml.token_type": .array(.i32([1, 1]))], "expected \(n) entries"),
            (["tokenizer.ggml.token_type": .array(.i32(types.map { $0 == 6 ? 1 : $0 }))], "lacks <0x00>"),
            (["tokenizer.ggml.token_type": .array(.i32(aAsByte))], "byte token \(tokenA) is 'a'"),
            (["tokenizer.ggml.token_type": .array(.i32(Array(repeating: 9, count: n)))], "token_type[0]"),
            (["tokenizer.ggml.add_space_prefix": .string("yes")], "add_space_prefix"),
            (["tokenizer.ggml.bos_token_id": .u32(UInt32(n))], "bos_token_id"),
            (["tokenizer.ggml.model": .string("bert")], "found 'bert'"),
        ]
        for (replacing, fragment) in cases {
            let path = try writeGGUF(g, replacing: replacing)
            XCTAssertThrowsError(try Tokenizer(gguf: GGUFFile(path: path)), "\(fragment)") { e in
                XCTAssertTrue("\(e)".contains(path) && "\(e)".contains(fragment), "\(e)")
            }
        }
    }

    /// Invariant: a GGUF vocabulary holding a 200 000-character token (hostile or broken) loads in well under a
    /// second — building the score merge table is not quadratic in token length — and still tokenizes.
    func testHugeTokenDoesNotStallLoading() throws {
        let g = try GGUFFile(path: Self.fixture("llama2.gguf.bin"))
        var tokens = try XCTUnwrap(g.metadata["tokenizer.ggml.tokens"]?.array?.map { $0.string! })
        var scores = [Float](repeating: -1, count: tokens.count)
        for i in scores.indices { scores[i] = -Float(i) }
        let huge = tokens.firstIndex(of: "▁the")!
        tokens[huge] = String(repeating: "ab", count: 100_000)
        let path = try writeGGUF(g, replacing: ["tokenizer.ggml.tokens": .array(.string(tokens)), "tokenizer.ggml.scores": .array(.f32(scores))])
        let started = Date()
        let tok = try Tokenizer(gguf: GGUFFile(path: path))
        XCTAssertLessThan(Date().timeIntervalSince(started), 1)
        XCTAssertEqual(tok.decode(tok.encode("Hello world")), "Hello world")
    }

    /// Invariant: a SentencePiece-style tokenizer.json this tokenizer cannot reproduce (no byte fallback, missing
    /// byte tokens, other normalizers or pre-tokenizer steps, unknown Metaspace options) is refused with the
    /// file and the section named, instead of producing ids that differ from the model's.
    func testMalformedTokenizerJSONIsRefused() throws {
        let base = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: Self.fixture("metaspace/tokenizer.json")))) as? [String: Any])
        let metaspace = base["pre_tokenizer"] as! [String: Any]
        func edited(_ edit: (inout [String: Any], inout [String: Any]) -> Void) -> [String: Any] {
            var json = base, model = base["model"] as! [String: Any]
            edit(&json, &model)
            json["model"] = model
            return json
        }
        func with(_ pre: [String: Any]) -> [String: Any] { metaspace.merging(pre) { $1 } }
        let cases: [([String: Any], String)] = [
            (edited { _, m in m["byte_fallback"] = false }, "model.byte_fallback"),
            (edited { _, m in
                var vocab = m["vocab"] as! [String: Any]
                vocab["byte41"] = vocab.removeValue(forKey: "<0x41>")
                m["vocab"] = vocab
            }, "lacks <0x41>"),
            (edited { j, _ in j["normalizer"] = ["type": "NFKC"] }, "'NFKC'"),
            (edited { j, _ in j["pre_tokenizer"] = ["type": "Sequence", "pretokenizers": [metaspace, ["type": "Digits", "individual_digits": true]]] }, "'Digits'"),
            (edited { j, _ in j["pre_tokenizer"] = with(["replacement": "_"]) }, "pre_tokenizer.replacement"),
            (edited { j, _ in j["pre_tokenizer"] = with(["prepend_scheme": "sometimes"]) }, "found 'sometimes'"),
            (edited { j, _ in j["pre_tokenizer"] = NSNull() }, "without a Metaspace pre-tokenizer"),
        ]
        let path = temporaryDirectory() + "/tokenizer.json"
        for (json, fragment) in cases {
            try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: path))
            XCTAssertThrowsError(try Tokenizer(tokenizerJSON: path), fragment) { e in
                XCTAssertTrue("\(e)".contains(path) && "\(e)".contains(fragment), "\(e)")
            }
        }
    }
}
