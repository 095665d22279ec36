// Reading user text files: UTF-8 validated (an invalid byte is reported with its offset), JSONL parsed line
// by line with the line number in every error. No line is ever dropped silently. Windows line endings read
// as Unix ones: CRLF becomes LF (in Swift "\r\n" is one Character, so splitting on "\n" would not see it); a
// UTF-8 byte order mark at the start is dropped.
import Foundation

public enum TextFiles {
    /// The file's text, UTF-8 validated, with CRLF line endings turned into LF and a leading byte order mark
    /// (Windows editors write one) dropped.
    public static func readUTF8(_ path: String) throws -> String {
        var text = try validatedUTF8(path)
        if text.unicodeScalars.first == "\u{FEFF}" { text.unicodeScalars.removeFirst() }
        return text.utf8.contains(13) ? text.replacingOccurrences(of: "\r\n", with: "\n") : text
    }

    /// The file's text as it is, UTF-8 validated.
    private static func validatedUTF8(_ path: String) throws -> String {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(file: path, location: "", "cannot read the file (missing or unreadable)")
        }
        return try data.withUnsafeBytes { raw -> String in
            if let s = String(validating: raw, as: UTF8.self) { return s }
            // Find the first invalid byte for the message.
            var offset = 0
            let bytes = raw.bindMemory(to: UInt8.self)
            while offset < bytes.count {
                let b = bytes[offset]
                let n = b < 0x80 ? 1 : b >= 0xF0 && b < 0xF5 ? 4 : b >= 0xE0 ? 3 : b >= 0xC2 && b < 0xE0 ? 2 : 0
                if n == 0 || offset + n > bytes.count { break }
                let slice = UnsafeRawBufferPointer(rebasing: raw[offset..<(offset + n)])
                if String(validating: slice, as: UTF8.self) == nil { break }
                offset += n
            }
            let line = bytes[..<min(offset, bytes.count)].filter { $0 == 10 }.count + 1
            throw FormatError(file: path, location: "line \(line), byte offset \(offset)", "invalid UTF-8 (expected UTF-8 text)")
        }
    }

    /// Each non-blank line of a JSONL file as a JSON object, with its 1-based line number.
    public static func readJSONL(_ path: String) throws -> [(line: Int, object: [String: Any])] {
        let text = try readUTF8(path)
        var out: [(Int, [String: Any])] = []
        var lineNumber = 0
        for line in text.split(separator: "\n", omittingEmptySubsequences: false) {
            lineNumber += 1
            let trimmed = line.trimmingCharacters(in: .whitespacesAndNewlines)
            if trimmed.isEmpty { continue }
            let parsed: Any
            do { parsed = try JSONSerialization.jsonObject(with: Data(trimmed.utf8), options: [.fragmentsAllowed]) } catch {
                throw FormatError.line(path, lineNumber, "malformed JSON (expected one JSON object per line)")
            }
            guard let object = parsed as? [String: Any] else {
                throw FormatError.line(path, lineNumber, "expected a JSON object, found \(type(of: parsed))")
            }
            out.append((lineNumber, object))
        }
        return out
    }
}
