// Splits text into pieces before byte-level BPE, reproducing the regular expressions of each model family
// as hand-written scanners over Unicode scalars (\s = White_Space, \p{L} = letters, \p{N} = numbers):
//
//   gpt2    's|'t|'re|'ve|'m|'ll|'d| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+
//   smollm  \p{N} (each number character alone), then gpt2 on the rest          (SmolLM / SmolLM2, StarCoder)
//   llama3  (?i:'s|'t|'re|'ve|'m|'ll|'d)|[^\r\n\p{L}\p{N}]?\p{L}+|\p{N}{1,3}| ?[^\s\p{L}\p{N}]+[\r\n]*|\s*[\r\n]+|\s+(?!\S)|\s+
//   qwen2   llama3 with \p{N} instead of \p{N}{1,3}

public enum PreTokenizerFamily: String, Sendable, CaseIterable {
    case gpt2, smollm, llama3, qwen2
}

@inline(__always) func isLetter(_ s: Unicode.Scalar) -> Bool {
    switch s.properties.generalCategory {
    case .uppercaseLetter, .lowercaseLetter, .titlecaseLetter, .modifierLetter, .otherLetter: return true
    default: return false
    }
}

@inline(__always) func isNumber(_ s: Unicode.Scalar) -> Bool {
    switch s.properties.generalCategory {
    case .decimalNumber, .letterNumber, .otherNumber: return true
    default: return false
    }
}

@inline(__always) func isSpace(_ s: Unicode.Scalar) -> Bool { s.properties.isWhitespace }
@inline(__always) func isNewline(_ s: Unicode.Scalar) -> Bool { s == "\r" || s == "\n" }
@inline(__always) func isOther(_ s: Unicode.Scalar) -> Bool { !isSpace(s) && !isLetter(s) && !isNumber(s) }

public struct PreTokenizer: Sendable {
    public let family: PreTokenizerFamily

    public init(_ family: PreTokenizerFamily) { self.family = family }

    /// Pieces of `text` (as ranges of its scalars).
    public func split(_ text: String) -> [String] {
        let scalars = Array(text.unicodeScalars)
        var pieces: [String] = []
        func emit(_ a: Int, _ b: Int) {
            var s = String.UnicodeScalarView()
            s.append(contentsOf: scalars[a..<b])
            pieces.append(String(s))
        }
        switch family {
        case .gpt2:
            splitGPT2(scalars, 0, scalars.count, emit)
        case .smollm:
            var start = 0
            for i in 0..<scalars.count where isNumber(scalars[i]) {
                splitGPT2(scalars, start, i, emit)
                emit(i, i + 1)
                start = i + 1
            }
            splitGPT2(scalars, start, scalars.count, emit)
        case .llama3, .qwen2:
            splitLlama3(scalars, maxDigits: family == .llama3 ? 3 : 1, emit)
        }
        return pieces
    }

    /// Length of a contraction ('s 't 're 've 'm 'll 'd) at i, or 0.
    func contraction(_ s: [Unicode.Scalar], _ i: Int, _ end: Int, caseInsensitive: Bool) -> Int {
        guard s[i] == "'", i + 1 < end else { return 0 }
        func lower(_ c: Unicode.Scalar) -> Unicode.Scalar {
            caseInsensitive && c.value >= 65 && c.value <= 90 ? Unicode.Scalar(c.value + 32)! : c
        }
        let c1 = lower(s[i + 1])
        if c1 == "s" || c1 == "t" || c1 == "m" || c1 == "d" { return 2 }
        if i + 2 < end {
            let c2 = lower(s[i + 2])
            if (c1 == "r" && c2 == "e") || (c1 == "v" && c2 == "e") || (c1 == "l" && c2 == "l") { return 3 }
        }
        return 0
    }

    func splitGPT2(_ s: [Unicode.Scalar], _ begin: Int, _ end: Int, _ emit: (Int, Int) -> Void) {
        var i = begin
        while i < end {
            let c = contraction(s, i, end, caseInsensitive: false)
            if c > 0 { emit(i, i + c); i += c; continue }
            // ` ?X+` for X in letters, numbers, other
            let j = (s[i] == " " && i + 1 < end) ? i + 1 : i
            let classes: [(Unicode.Scalar) -> Bool] = [isLetter, isNumber, isOther]
            var matched = false
            for cls in classes where cls(s[j]) {
                var k = j + 1
                while k < end && cls(s[k]) { k += 1 }
                emit(i, k); i = k; matched = true
                break
            }
            if matched { continue }
            // whitespace: \s+(?!\S) then \s+
            var k = i
            while k < end && isSpace(s[k]) { k += 1 }
            if k < end && k - i > 1 { k -= 1 }
            emit(i, k); i = k
        }
    }

    func splitLlama3(_ s: [Unicode.Scalar], maxDigits: Int, _ emit: (Int, Int) -> Void) {
        let end = s.count
        var i = 0
        while i < end {
            let c = contraction(s, i, end, caseInsensitive: true)
            if c > 0 { emit(i, i + c); i += c; continue }
            // [^\r\n\p{L}\p{N}]?\p{L}+
            if isLetter(s[i]) || (!isNewline(s[i]) && !isNumber(s[i]) && i + 1 < end && isLetter(s[i + 1])) {
                var k = i + 1
                while k < end && isLetter(s[k]) { k += 1 }
                emit(i, k); i = k; continue
            }
            // \p{N}{1,maxDigits}
            if isNumber(s[i]) {
                var k = i + 1
                while k < end && k - i < maxDigits && isNumber(s[k]) { k += 1 }
                emit(i, k); i = k; continue
            }
            // ` ?[^\s\p{L}\p{N}]+[\r\n]*`
            let j = (s[i] == " " && i + 1 < end) ? i + 1 : i
            if isOther(s[j]) {
                var k = j + 1
                while k < end && isOther(s[k]) { k += 1 }
                while k < end && isNewline(s[k]) { k += 1 }
                emit(i, k); i = k; continue
            }
            // \s*[\r\n]+ : whitespace run up to and including its last newline run
            var k = i
            while k < end && isSpace(s[k]) { k += 1 }
            var lastNewline = -1
            for m in i..<k where isNewline(s[m]) { lastNewline = m }
            if lastNewline >= 0 {
                emit(i, lastNewline + 1); i = lastNewline + 1; continue
            }
            // \s+(?!\S) then \s+
            if k < end && k - i > 1 { k -= 1 }
            emit(i, k); i = k
        }
    }
}
