// The configuration's YAML and flag forms: strict types, finite numbers in range, duplicate keys refused with
// both lines, and the resolved config.yaml reads back to the same configuration.
import DTFormats
import DTTraining
import Foundation
import XCTest

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
        c.output = "2024"; c.model = "true"; c.resume = "auto"; c.nanPolicy = "skip"; c.overwrite = true
        c.learningRate = 1e-5; c.loraTargets = ["q_proj", "down_proj"]
        var back = TrainConfig()
        try back.apply(yaml: c.yaml, source: "config.yaml")
        XCTAssertEqual(back, c)
    }
}
