// Shared helpers for the test targets: fixture paths, the default model's location, seeded randomness.
import Foundation

public enum TestPaths {
    /// The default model (SmolLM2-135M-Instruct Q4_1) fetched by launch/setup.sh, or nil if absent.
    /// With DTRAIN_REQUIRE_MODEL=1 (set by .ci/run) its absence is a test failure, not a skip.
    public static var defaultModel: String? {
        let env = ProcessInfo.processInfo.environment
        let path = env["DTRAIN_MODEL"] ?? (env["HOME"] ?? "/root") + "/.cache/dtrain/models/SmolLM2-135M-Instruct.Q4_1.gguf"
        return FileManager.default.fileExists(atPath: path) ? path : nil
    }
    public static var modelRequired: Bool { ProcessInfo.processInfo.environment["DTRAIN_REQUIRE_MODEL"] == "1" }
    /// Repository root (for launch/ scripts and the built binary).
    public static var repoRoot: String {
        var url = URL(fileURLWithPath: #filePath)
        for _ in 0..<3 { url.deleteLastPathComponent() }
        return url.path
    }
}

/// SplitMix64: a tiny seeded generator so tests are repeatable.
public struct SeededRandom: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
    public mutating func normal() -> Float {
        let u1 = Double.random(in: Double.ulpOfOne..<1, using: &self), u2 = Double.random(in: 0..<1, using: &self)
        return Float((-2 * log(u1)).squareRoot() * cos(2 * .pi * u2))
    }
}
