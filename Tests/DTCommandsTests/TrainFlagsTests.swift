// `dtrain train`'s flags against the table of configuration keys: every key has exactly one flag, --help shows
// each with its help, choices and default, and a value reaches the configuration alike from a flag, from a
// run.yaml and back from a checkpoint's config.yaml.
import DTCommands
import DTTraining
import Foundation
import TestSupport
import XCTest

final class TrainFlagsTests: XCTestCase {
    /// `dtrain train --help`, not wrapped.
    let help = Train.helpMessage(columns: 100_000)

    /// The flags --help lists (`--name <value>` at the start of a line), duplicates kept.
    var listedFlags: [String] {
        help.split(separator: "\n").compactMap { line in
            let words = line.split(separator: " ")
            guard words.count >= 2, words[0].hasPrefix("--"), words[1].hasPrefix("<") else { return nil }
            return String(words[0])
        }
    }

    /// The part of --help about `flag`: from its line to the next option's.
    func helpBlock(_ flag: String) -> String? {
        guard let start = help.range(of: "  \(flag) <") else { return nil }
        let rest = help[start.upperBound...]
        return String(rest[..<(rest.range(of: "\n  -")?.lowerBound ?? rest.endIndex)])
    }

    /// Invariant: every key of the table reaches the configuration with the same non-default value from its flag,
    /// from a run.yaml given with --config, and back from a checkpoint's config.yaml (written by Checkpoint.save,
    /// read by the reader a resume uses) — so no key can be parsed, written or read differently on one path.
    func testEveryKeyRoundTripsThroughFlagsYAMLAndCheckpoint() throws {
        let state = try JSONDecoder().decode(TrainerState.self, from: Data(#"{"step": 1, "samplesSeen": 8, "optimizerStep": 1, "worldSize": 1}"#.utf8))
        for key in TrainConfig.keys {
            let text = try XCTUnwrap(key.sampleText, "\(key.name): no valid value other than the default")
            var expected = TrainConfig()
            try expected.set(key.name, text, source: "test")
            XCTAssertNotEqual(expected, TrainConfig(), key.name)

            XCTAssertEqual(try Train.parse([key.flag, text]).resolvedConfig(), expected, "\(key.flag) \(text)")

            let yaml = temporaryDirectory() + "/run.yaml"
            try "\(key.name): \(key.sampleYAML!)\n".write(toFile: yaml, atomically: true, encoding: .utf8)
            XCTAssertEqual(try Train.parse(["--config", yaml]).resolvedConfig(), expected, "\(key.name): \(key.sampleYAML!)")

            let checkpoint = temporaryDirectory() + "/checkpoint-000001"
            try Checkpoint.save(directory: checkpoint, adapterFiles: [], arena: ParameterArena([("p", [1])]), state: state,
                                configYAML: expected.yaml)
            XCTAssertEqual(try Checkpoint.savedConfig(checkpoint), expected, "config.yaml with \(key.name) = \(text)")
        }
    }

    /// Invariant: a flag overrides the same key of the YAML file (defaults < file < flags).
    func testFlagOverridesTheFile() throws {
        let yaml = temporaryDirectory() + "/run.yaml"
        try "learning_rate: 0.5\nseed: 7\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        let c = try Train.parse(["--config", yaml, "--learning-rate", "0.25"]).resolvedConfig()
        XCTAssertEqual(c.learningRate, 0.25)
        XCTAssertEqual(c.seed, 7)
    }

    /// Invariant: a number flag takes a negative value as its value, not as an unknown option: `--probe-layer -1`
    /// sets the key (over the file's 4), and `--seed -5` reaches the table and is refused by its range, naming the flag.
    func testNegativeNumbersReachTheTable() throws {
        let yaml = temporaryDirectory() + "/run.yaml"
        try "probe_layer: 4\n".write(toFile: yaml, atomically: true, encoding: .utf8)
        XCTAssertEqual(try Train.parse(["--config", yaml, "--probe-layer", "-1"]).resolvedConfig().probeLayer, -1)
        XCTAssertThrowsError(try Train.parse(["--seed", "-5"]).resolvedConfig()) { e in
            XCTAssertEqual("\(e)", "--seed: key 'seed': expected an integer ≥ 0, found '-5'")
        }
    }

    /// Invariant: every key of the table has exactly one flag and every flag of dtrain train but --config is a
    /// key's, so a key cannot be left without a flag or be set by two.
    func testEveryKeyHasExactlyOneFlag() {
        XCTAssertEqual(listedFlags.sorted(), (TrainConfig.keys.map(\.flag) + ["--config"]).sorted())
    }

    /// Invariant: `dtrain train --help` shows every key with its help text, each of its choices (or a number's
    /// range) and its default, e.g. all four methods and NF4 among the precisions (help texts that drifted from the
    /// code said less).
    func testHelpListsEveryKeyWithItsChoices() throws {
        for key in TrainConfig.keys {
            let block = try XCTUnwrap(helpBlock(key.flag), "\(key.flag) is not in --help")
            XCTAssertTrue(block.contains(key.help), "\(key.flag): \(block)")
            for choice in key.choices { XCTAssertTrue(block.contains(choice), "\(key.flag) lacks \(choice): \(block)") }
            if !key.defaultText.isEmpty { XCTAssertTrue(block.contains("default: \(key.defaultText))"), "\(key.flag): \(block)") }
            if key.kind == .integer || key.kind == .number { XCTAssertTrue(block.contains(key.accepts), "\(key.flag): \(block)") }
        }
        XCTAssertTrue(help.contains("--method <lora|qlora|prompt|probe>"), help)
        XCTAssertTrue(help.contains("--precision <fp32|as-stored|nf4>"), help)
        XCTAssertTrue(help.contains("--quant <nf4|as-stored>"), help)
    }
}
