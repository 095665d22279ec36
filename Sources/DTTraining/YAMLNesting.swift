// Deeply nested YAML must be an error, not a stack overflow. Yams' composer recurses a few frames per level of
// nesting with no limit (release build: ~1.8 KB of stack per level, so `[` × 5000 — a 5 KB file — overflows the
// main thread's 8 MiB; fuzzing found 900 levels under ASan), and it cannot be given a limit. So the document is
// composed on a thread whose stack fits the deepest nesting its text can hold, and text that could nest deeper
// than any configuration file is refused before that.
//
// The bound needs no parsing: libyaml opens every collection at one character of its own — `[` or `{`; `-` followed
// by a blank (a block sequence entry); `?` (an explicit key); `:` (the value of a block mapping's first key, or a
// flow pair) — so a document nests at most as deep as it has such characters.
import DTFormats
import Glibc

public enum YAMLNesting {
    /// More collection-opening characters than this (a configuration has a few dozen) is refused.
    static let maximumOpenings = 16_384

    /// Stack per possible level of nesting: about twice what Yams uses (~1.8 KB; ~9 KB under the fuzzer's ASan).
    #if DTRAIN_FUZZ
    static let stackPerLevel = 16 << 10
    #else
    static let stackPerLevel = 4 << 10
    #endif

    /// Up to this many openings the caller's stack is enough (64 levels take ~120 KB; ~600 KB under ASan).
    static let openingsOnCallersStack = 64

    /// An upper bound on how deeply the collections of `text` nest: its characters that can open a collection.
    public static func openingsBound(_ text: String) -> Int {
        // A sequence entry is "-" then a blank, a line break or the end (libyaml's IS_BLANKZ; 0xC2 / 0xE2 lead NEL,
        // LS and PS), so a "-" is counted when the byte after it is seen.
        func endsEntry(_ c: UInt8) -> Bool {
            c == 0 || c == UInt8(ascii: " ") || c == UInt8(ascii: "\t") || c == UInt8(ascii: "\r") || c == UInt8(ascii: "\n")
                || c == 0xC2 || c == 0xE2
        }
        var count = 0
        var afterDash = false
        for c in text.utf8 {
            if afterDash && endsEntry(c) { count += 1 }
            afterDash = c == UInt8(ascii: "-")
            switch c {
            case UInt8(ascii: "["), UInt8(ascii: "{"), UInt8(ascii: "?"), UInt8(ascii: ":"): count += 1
            default: break
            }
        }
        return afterDash ? count + 1 : count
    }

    /// Runs `body` where the stack holds `openings` levels of Yams' recursion: on the caller's thread for a few,
    /// else on a new thread with a stack of 256 KiB + `openings` × `stackPerLevel`, waiting for it. Throws if that
    /// thread cannot be started (its stack cannot be allocated), or what `body` throws.
    static func onStack(for openings: Int, file: String, _ body: @escaping () throws -> Void) throws {
        if openings <= openingsOnCallersStack { return try body() }
        final class Task {
            let body: () throws -> Void
            var failure: Error?
            init(_ body: @escaping () throws -> Void) { self.body = body }
        }
        let bytes = (256 << 10) + openings * stackPerLevel
        var attributes = pthread_attr_t()
        pthread_attr_init(&attributes)
        defer { pthread_attr_destroy(&attributes) }
        guard pthread_attr_setstacksize(&attributes, bytes) == 0 else {
            throw FormatError(file: file, location: "", "cannot set a \(bytes >> 10) KiB stack to read this YAML")
        }
        let work = Task(body)
        let task = Unmanaged.passRetained(work).toOpaque()
        var thread = pthread_t()
        let status = pthread_create(&thread, &attributes, { argument in
            let work = Unmanaged<Task>.fromOpaque(argument!).takeRetainedValue()
            do { try work.body() } catch { work.failure = error }
            return nil
        }, task)
        guard status == 0 else {
            Unmanaged<Task>.fromOpaque(task).release()
            throw FormatError(file: file, location: "", "cannot start a thread with a \(bytes >> 10) KiB stack to read this YAML (error \(status))")
        }
        pthread_join(thread, nil)
        if let failure = work.failure { throw failure }
    }
}
