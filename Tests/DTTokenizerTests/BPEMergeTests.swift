// The heap-based BPE merge against the textbook loop (kept here as the reference, not in Sources): equal ids on
// many seeded random texts, and linear-ish time on a 1 MB pre-token (a base64-like blob, a DNA string).
import DTFormats
import DTTokenizer
import Foundation
import TestSupport
import XCTest

/// The textbook BPE: repeatedly merge the lowest-ranked adjacent pair (leftmost among equals). O(n²) per piece.
struct NaiveBPE {
    let ids: [String: Int32]
    let ranks: [UInt64: (rank: Int, merged: Int32)]

    init(tokenizerJSON path: String) throws {
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
        let model = try XCTUnwrap(json["model"] as? [String: Any])
        let vocab = try XCTUnwrap(model["vocab"] as? [String: NSNumber])
        var ids: [String: Int32] = [:]
        for (token, id) in vocab { ids[token] = Int32(id.intValue) }
        var ranks: [UInt64: (Int, Int32)] = [:]
        for (rank, m) in try XCTUnwrap(model["merges"] as? [Any]).enumerated() {
            let pair = (m as? String).map { $0.split(separator: " ", maxSplits: 1).map(String.init) } ?? (m as! [String])
            let key = Self.key(ids[pair[0]]!, ids[pair[1]]!)
            if ranks[key] == nil { ranks[key] = (rank, ids[pair[0] + pair[1]]!) }
        }
        self.ids = ids
        self.ranks = ranks
    }

    static func key(_ a: Int32, _ b: Int32) -> UInt64 { UInt64(UInt32(bitPattern: a)) << 32 | UInt64(UInt32(bitPattern: b)) }

    func encodePiece(_ piece: String) -> [Int32] {
        var symbols = piece.utf8.map { ids[String(ByteLevel.byteToScalar[Int($0)])] ?? -1 }
        while symbols.count > 1 {
            var best = Int.max, at = -1, merged: Int32 = 0
            for k in 0..<(symbols.count - 1) {
                if let m = ranks[Self.key(symbols[k], symbols[k + 1])], m.rank < best { best = m.rank; at = k; merged = m.merged }
            }
            if at < 0 { break }
            symbols[at] = merged
            symbols.remove(at: at + 1)
        }
        return symbols.filter { $0 >= 0 }
    }

    func encode(_ text: String, _ pre: PreTokenizer) -> [Int32] { pre.split(text).flatMap(encodePiece) }
}

final class BPEMergeTests: XCTestCase {
    static let path = Bundle.module.path(forResource: "Fixtures/smollm2_tokenizer.json", ofType: nil)!
    static let tokenizer = try! Tokenizer(tokenizerJSON: path)
    static let naive = try! NaiveBPE(tokenizerJSON: path)

    func randomText(_ rng: inout SeededRandom, length: Int, alphabet: [String]) -> String {
        (0..<length).map { _ in alphabet[Int(rng.next() % UInt64(alphabet.count))] }.joined()
    }

    static let letters = (Array("ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz")).map(String.init)

    /// Invariant: the heap merge gives exactly the textbook loop's ids — on mixed texts (letters, digits,
    /// spaces, punctuation, newlines, accents, CJK, emoji) and on long single pieces full of equal-rank ties.
    func testHeapMergeEqualsTextbookLoop() {
        var rng = SeededRandom(seed: 13)
        let mixed = Self.letters + ["e", "e", "t", "h", " ", " ", " ", "  ", "\n", "\t", "1", "7", ".", ",", "'s", "-", "é", "ß", "中", "文",
                                    "🌍", "\u{0301}", "ab", "the ", "ing", "aaaa", "==", "\r\n"]
        for i in 0..<300 {
            let text = randomText(&rng, length: 1 + Int(rng.next() % 400), alphabet: mixed)
            XCTAssertEqual(Self.tokenizer.encode(text, parseSpecial: false), Self.naive.encode(text, Self.tokenizer.preTokenizer),
                           "case \(i): \(String(reflecting: text.prefix(200)))")
        }
        let pieces: [[String]] = [Self.letters, ["A", "C", "G", "T"], ["a"], ["a", "b"], ["e", "r"], ["x", "y", "z", "Q"], ["ab", "ba", "a"]]
        for (i, alphabet) in pieces.enumerated() {
            for length in [2, 3, 17, 256, 257, 3000] {
                let text = randomText(&rng, length: length, alphabet: alphabet)
                XCTAssertEqual(Self.tokenizer.encode(text, parseSpecial: false), Self.naive.encode(text, Self.tokenizer.preTokenizer),
                               "alphabet \(i), length \(length)")
            }
        }
    }

    /// Invariant: one 1 MB pre-token (no spaces) tokenizes in well under a second — the merge loop is not
    /// quadratic — and round-trips.
    func testMegabytePreTokenIsFast() {
        var rng = SeededRandom(seed: 7)
        for (name, alphabet) in [("base64-like letters", Self.letters), ("DNA", ["A", "C", "G", "T"])] {
            let text = randomText(&rng, length: 1 << 20, alphabet: alphabet)
            XCTAssertEqual(Self.tokenizer.preTokenizer.split(text).count, 1, "\(name) must be a single pre-token")
            let started = Date()
            let ids = Self.tokenizer.encode(text, parseSpecial: false)
            let seconds = Date().timeIntervalSince(started)
            print(String(format: "BPE of a 1 MB %@ pre-token: %.3f s, %d tokens", name, seconds, ids.count))
            XCTAssertLessThan(seconds, 2, "\(name): 1 MB took \(seconds) s")
            XCTAssertEqual(Self.tokenizer.decode(ids), text)
        }
    }
}
