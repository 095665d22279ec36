// The hostile-input suite: every case of Fixtures/hostile/cases.json (made by scripts/make_hostile_inputs.py —
// corrupted or unusual GGUF files, HF directories, tokenizers, JSONL/TXT data, YAML configs, adapter, probe and
// checkpoint directories, run directories and flags) run through the dtrain binary in that directory.
import Foundation
import TestSupport
import XCTest

final class HostileInputTests: XCTestCase {
    struct Case: Decodable { let name: String; let args: [String]; let expect: String; let mentions: [String]; let note: String }
    struct Cases: Decodable { let cases: [Case] }

    static let root = TestPaths.repoRoot + "/Tests/DTCommandsTests/Fixtures/hostile"

    /// Every file under `dir` (relative path → size and bytes), to show a refused run wrote nothing.
    func snapshot(_ dir: String) -> [String: Data] {
        var out: [String: Data] = [:]
        for case let relative as String in FileManager.default.enumerator(atPath: dir)?.allObjects ?? [] {
            var isDirectory: ObjCBool = false
            FileManager.default.fileExists(atPath: dir + "/" + relative, isDirectory: &isDirectory)
            out[relative] = isDirectory.boolValue ? Data() : FileManager.default.contents(atPath: dir + "/" + relative)
        }
        return out
    }

    /// Invariant: on every hostile input dtrain either exits with a clean error (status 1, or 64 for a flag
    /// refused while parsing; never a signal, a Swift runtime failure or a hang past the timeout) whose message
    /// names the file (or flag) and the key, line or byte offset — and a refused run leaves its output directory
    /// as it was — or it accepts the input and succeeds.
    func testEveryHostileInputIsRefusedCleanlyOrAccepted() throws {
        let data = try Data(contentsOf: URL(fileURLWithPath: Self.root + "/cases.json"))
        let cases = try JSONDecoder().decode(Cases.self, from: data).cases
        XCTAssertGreaterThanOrEqual(cases.count, 60)
        var failures: [String] = []
        for c in cases {
            var copies: [String] = []
            let args = try c.args.map { arg -> String in
                if arg == "{tmp}" { return temporaryDirectory() }
                guard arg.hasPrefix("{copy:"), arg.hasSuffix("}") else { return arg }
                let copy = temporaryDirectory() + "/copy"
                try FileManager.default.copyItem(atPath: Self.root + "/" + String(arg.dropFirst(6).dropLast()), toPath: copy)
                copies.append(copy)
                return copy
            }
            let before = copies.map(snapshot)
            let r = try DTrainProcess.run(args, timeout: 120, directory: Self.root)
            let what = "\(c.name) (dtrain \(args.joined(separator: " ")))"
            if r.timedOut { failures.append("\(what): no answer within 120 s (a hang)"); continue }
            if r.signalled || r.stderr.contains("Swift runtime failure") || r.stderr.contains("Fatal error") {
                failures.append("\(what): crashed (status \(r.status)):\n\(r.stderr.suffix(1500))"); continue
            }
            if c.expect == "ok" {
                if r.status != 0 { failures.append("\(what): should be accepted, exited \(r.status):\n\(r.stderr.suffix(800))") }
                continue
            }
            guard r.status == 1 || r.status == 64 else {
                failures.append("\(what): should be refused, exited \(r.status):\n\(r.stderr.suffix(800))"); continue
            }
            let missing = c.mentions.filter { !r.stderr.contains($0) }
            if !missing.isEmpty { failures.append("\(what): the message lacks \(missing):\n\(r.stderr.suffix(800))") }
            for (copy, snap) in zip(copies, before) where snapshot(copy) != snap {
                failures.append("\(what): the refused run changed \(copy)")
            }
        }
        for f in failures { XCTFail(f) }
        print("hostile inputs: \(cases.count) cases (\(cases.filter { $0.expect == "ok" }.count) accepted), \(failures.count) failures")
    }
}
