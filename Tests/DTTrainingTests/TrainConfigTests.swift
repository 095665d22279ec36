// The configuration's YAML and flag forms: strict types, finite numbers in range, duplicate keys refused with
// both lines, deep nesting refused without a stack overflow, and the resolved config.yaml reads back to the same
// configuration; the table of keys covers every setting, decides what a resume must match, and is documented in
// docs/usage.md.
import DTFormats
import DTTraining
import Foundation
import TestSupport
import XCTest
import Yams

final class TrainConfigTests: XCTestCase {
    func refuses(_ yaml: String, _ fragments: [String], line: UInt = #line) {
        var c = TrainConfig()
        XCTAssertThrowsError(try c.apply(yaml: yaml, source: "run.yaml"), line: line) { e in
            for f in ["run.yaml"] + fragments { XCTAssertTrue("\(e)".contains(f), "'\(e)' lacks '\(f)'", line: line) }
        }
    }

    /// Invariant: a key given twice is refused naming both lines (YAML loaders otherwise keep the last).
    func testDuplicateKeyNamesBothLines() {
        refuses("seed: 1\nlearning_rate: 0.1\nseed: 2\n", ["line 3", "key 'seed'", "duplicate", "line 1"])
    }

    /// Invariant: integers are YAML integers, numbers are numbers (not quoted strings or bools), flags are bools.
    func testTypesAreStrict() {
        refuses("batch_size: 8.5\n", ["line 1", "batch_size", "an integer", "8.5"])
        refuses("num_virtual_tokens: true\n", ["num_virtual_tokens", "an integer"])
        refuses("lora_alpha: \"16\"\n", ["lora_alpha", "a number", "quoted string"])
        refuses("packing: 1\n", ["packing", "true or false"])
        refuses("lora_targets: {q_proj: 1}\n", ["lora_targets", "a list of names"])
        // YAML 1.1 base-60 integers are refused, not parsed: Yams traps on one that overflows (found by fuzzing).
        refuses("seed: -4444444444444444111:02\n", ["line 1", "seed", "an integer", "-4444444444444444111:02"])
        refuses("max_steps: 1:30\n", ["max_steps", "an integer"])
    }

    /// Invariant: YAML nested deeper than Yams' recursion fits on a thread's stack is an error naming the file and
    /// key, not a stack overflow (fuzzing found it; before, `[` × 5000 or 3000 nested mappings crashed the process):
    /// flow, compact block sequences and indented mappings; past the readable size, a refusal before composing.
    func testDeepNestingIsAnErrorNotAStackOverflow() {
        let n = 16_000
        refuses("lora_targets: " + String(repeating: "[", count: n) + String(repeating: "]", count: n) + "\n",
                ["line 1", "lora_targets", "a list of names"])
        refuses("lora_targets:\n" + String(repeating: "- ", count: n) + "x\n", ["lora_targets", "a list of names"])
        refuses("lora_targets:\n" + (1..<3000).map { String(repeating: " ", count: $0) + "k:\n" }.joined(), ["lora_targets", "a list of names"])
        refuses(String(repeating: "{", count: 20_000), ["20000 characters that open YAML collections", "at most 16384"])
        var c = TrainConfig()
        XCTAssertThrowsError(try c.apply(yaml: "seed: 7\nlora_targets: [[x]]\n", source: "run.yaml"))
        XCTAssertEqual(c.seed, TrainConfig().seed, "a refused file leaves the configuration as it was")
    }

    /// Invariant: `YAMLNesting.openingsBound` (which sizes the stack Yams composes on) is never below the depth Yams
    /// composes, for random trees in every style libyaml's emitter writes (flow, block, explicit complex keys,
    /// canonical, CRLF) and for hand-written forms it does not write (JSON-like pairs, indentless and compact sequences).
    func testOpeningsBoundIsAtLeastTheComposedDepth() throws {
        func depth(_ node: Node) -> Int {
            switch node {
            case .scalar: return 0
            case .sequence(let s): return 1 + (s.map(depth).max() ?? 0)
            case .mapping(let m): return 1 + (m.map { max(depth($0.key), depth($0.value)) }.max() ?? 0)
            }
        }
        var rng = SeededRandom(seed: 11)
        let scalars = ["a", "b: c", "- d", "[e]", "{f}", "?g", "h #i", "two\nlines", "", "'q'", "\"dq\"", "-", ":", "x-y"]
        func random(_ levels: Int) -> Node {
            if levels == 0 || rng.next() % 5 == 0 { return Node(scalars[Int(rng.next() % UInt64(scalars.count))]) }
            let count = Int(rng.next() % 3)
            let flow = rng.next() % 2 == 0
            if rng.next() % 2 == 0 {
                return Node((0..<count).map { _ in random(levels - 1) }, .implicit, flow ? .flow : .block)
            }
            let pairs = (0..<count).map { i -> (Node, Node) in
                (rng.next() % 4 == 0 ? random(2) : Node("k\(i)"), random(levels - 1))
            }
            return Node(pairs, .implicit, flow ? .flow : .block)
        }
        var checked = 0
        for _ in 0..<400 {
            let tree = random(Int(rng.next() % 12))
            let text = try Yams.serialize(node: tree, canonical: rng.next() % 4 == 0, lineBreak: rng.next() % 3 == 0 ? .crln : .ln)
            guard let composed = try Yams.compose(yaml: text) else { continue }
            XCTAssertGreaterThanOrEqual(YAMLNesting.openingsBound(text), depth(composed), text)
            checked += 1
        }
        XCTAssertGreaterThan(checked, 350)
        let handWritten = ["{\"a\":{\"b\":[\"c\",{\"d\":[]}]}}", "key:\n- a\n- - b\n  - c\n", "? - a\n  - b\n: - c\n",
                           "[a: [b: [c: d]]]", "[? a : [? b]]", "- - - - x\n", "a:\r\n  b:\r\n    - c\r\n", "-\u{85}- x\n",
                           "- &x [a, {b: c}]\n- *x\n", "!!map {? !!seq [a] : !!str b}\n"]
        for text in handWritten {
            let composed = try XCTUnwrap(try Yams.compose(yaml: text), text)
            XCTAssertGreaterThan(depth(composed), 0, text)
            XCTAssertGreaterThanOrEqual(YAMLNesting.openingsBound(text), depth(composed), text)
        }
    }

    /// Invariant: NaN and ±inf never enter, from YAML or from a flag; out-of-range values name the range.
    func testNonFiniteAndOutOfRangeAreRefused() {
        refuses("learning_rate: .nan\n", ["learning_rate", "finite"])
        refuses("epochs: .inf\n", ["epochs", "finite"])
        refuses("weight_decay: -0.1\n", ["weight_decay", "≥ 0"])
        refuses("seed: -1\n", ["seed", "≥ 0"])
        refuses("probe_layer: -2\n", ["probe_layer", "[-1,"])
        refuses("watchdog_factor: -1\n", ["watchdog_factor", "≥ 0"])
        refuses("watchdog_min_seconds: 0\n", ["watchdog_min_seconds", "> 0"])
        var c = TrainConfig()
        for (key, value) in [("learning_rate", "nan"), ("max_grad_norm", "inf"), ("epochs", "-inf"), ("lora_alpha", "0")] {
            XCTAssertThrowsError(try c.set(key, value, source: "--\(key)")) { XCTAssertTrue("\($0)".contains("--\(key)"), "\($0)") }
        }
    }

    /// Invariant: the resolved config.yaml (written into every run and checkpoint) reads back to the same
    /// configuration, whatever its text values hold (quotes, newlines, numbers, words YAML reads as bools).
    func testResolvedYAMLReadsBackEqual() throws {
        var c = TrainConfig()
        c.promptInitText = "Say \"hi\"\nthen: yes # not a comment\\"
        c.output = "2024"; c.model = "true"; c.resume = .auto; c.nanPolicy = .skip; c.overwrite = true
        c.learningRate = 1e-5; c.loraTargets = [.q, .down]
        var back = TrainConfig()
        try back.apply(yaml: c.yaml, source: "config.yaml")
        XCTAssertEqual(back, c)
    }

    /// Invariant: the table covers every stored property of TrainConfig exactly once — each key's value changes
    /// exactly one property and no two keys change the same one — so no setting exists without its key (and
    /// hence without its YAML name, flag, help line and place in config.yaml).
    func testEveryStoredPropertyHasExactlyOneKey() throws {
        let properties = Mirror(reflecting: TrainConfig()).children.map { ($0.label ?? "?", String(describing: $0.value)) }
        XCTAssertEqual(properties.count, TrainConfig.keys.count)
        var owner: [String: String] = [:]
        for key in TrainConfig.keys {
            let sample = try XCTUnwrap(key.sampleText, "\(key.name): no valid value other than the default")
            var c = TrainConfig()
            try c.set(key.name, sample, source: "test")
            let changed = zip(properties, Mirror(reflecting: c).children).filter { $0.0.1 != String(describing: $0.1.value) }.map(\.0.0)
            XCTAssertEqual(changed.count, 1, "\(key.name) = \(sample) changes \(changed)")
            for property in changed {
                if let other = owner[property] { XCTFail("\(key.name) and \(other) both set \(property)") }
                owner[property] = key.name
            }
        }
        XCTAssertEqual(Set(owner.keys), Set(properties.map(\.0)))
    }

    /// Invariant: resuming refuses a checkpoint whose config.yaml differs from the run on a must-match key, naming
    /// the key and both values, and accepts one that differs only on a free key — for every key of the table; in
    /// particular a changed lora_rank is refused and a changed log_every accepted.
    func testResumeRefusesChangedMustMatchKeysAndAcceptsFreeOnes() throws {
        for key in TrainConfig.keys {
            var saved = TrainConfig()
            try saved.set(key.name, try XCTUnwrap(key.sampleText, key.name), source: "test")
            let dir = temporaryDirectory()
            try saved.yaml.write(toFile: dir + "/config.yaml", atomically: true, encoding: .utf8)
            XCTAssertNoThrow(try Checkpoint.checkCompatible(dir, with: saved), key.name)
            switch key.onResume {
            case .mustMatch:
                XCTAssertThrowsError(try Checkpoint.checkCompatible(dir, with: TrainConfig()), key.name) { e in
                    for f in [dir + "/config.yaml", "key '\(key.name)'", "made with \(key.name) = '\(saved.value(key.name))'",
                              "this run has '\(key.defaultText)'"] {
                        XCTAssertTrue("\(e)".contains(f), "'\(e)' lacks '\(f)'")
                    }
                }
            case .free:
                XCTAssertNoThrow(try Checkpoint.checkCompatible(dir, with: TrainConfig()), key.name)
            }
        }
        XCTAssertEqual(TrainConfig.key(named: "lora_rank").onResume, .mustMatch)
        XCTAssertEqual(TrainConfig.key(named: "log_every").onResume, .free)
    }

    /// Invariant: docs/usage.md's table of keys names every key of the table and no other, so the documentation
    /// cannot miss a new key or keep a removed one.
    func testUsageDocumentsEveryKey() throws {
        let lines = try String(contentsOfFile: TestPaths.repoRoot + "/docs/usage.md", encoding: .utf8).components(separatedBy: "\n")
        let header = try XCTUnwrap(lines.firstIndex(of: "| key | default | meaning |"))
        let rows = lines[(header + 2)...].prefix { $0.hasPrefix("| ") }
        let documented = rows.flatMap { $0.split(separator: "|")[0].split(separator: "/").map { $0.trimmingCharacters(in: .whitespaces) } }
        XCTAssertEqual(documented.sorted(), TrainConfig.keys.map(\.name).sorted())
    }
}
