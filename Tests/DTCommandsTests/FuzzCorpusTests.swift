// The fuzz corpora replayed through their targets in the ordinary build: the committed seeds and every input a
// fuzzing campaign crashed on (Tests/Fuzz/corpus/<target>/regression-*, kept after the fix) must run without a
// trap. scripts/fuzz.sh does the fuzzing itself (libFuzzer + ASan); this keeps the fixed crashes fixed.
import DTFuzz
import Foundation
import TestSupport
import XCTest

final class FuzzCorpusTests: XCTestCase {
    /// Invariant: every fuzz target has a corpus directory (scripts/fuzz.sh runs the targets it finds there)
    /// and every input in it is read (accepted or refused with an error) without crashing.
    func testCorporaReplayWithoutCrash() throws {
        let root = TestPaths.repoRoot + "/Tests/Fuzz/corpus"
        XCTAssertEqual(Set(try FileManager.default.contentsOfDirectory(atPath: root)), Set(FuzzTargets.names))
        var inputs = 0
        for target in FuzzTargets.names {
            let dir = root + "/" + target
            let files = try FileManager.default.contentsOfDirectory(atPath: dir).sorted()
            XCTAssertFalse(files.isEmpty, "\(target) has no seeds")
            for file in files {
                let data = try Data(contentsOf: URL(fileURLWithPath: dir + "/" + file))
                data.withUnsafeBytes { FuzzTargets.run(target, $0) }
                inputs += 1
            }
        }
        XCTAssertGreaterThan(inputs, 100)
    }
}
