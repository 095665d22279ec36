// The interop fixtures (Tests/DTTrainingTests/Fixtures/interop, made by scripts/make_interop_fixtures.py and
// make_dora_fixtures.py) and the two measurements the PEFT comparisons make on them: logits and mean NLL.
import DTKernels
import DTModel
import Foundation
import XCTest

enum InteropFixtures {
    static func path(_ name: String, madeBy script: String) throws -> String {
        try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/interop/\(name)", ofType: nil), "fixture \(name) missing: run scripts/\(script)")
    }

    static func json(_ path: String) throws -> [String: Any] {
        try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }

    /// Logits (T, V) of one sequence with an adapter (virtual-token rows dropped).
    static func logits(_ model: LlamaModel, _ ids: [Int32], adapter: ModelAdapter?) -> [Float] {
        let V = adapter?.virtualTokens ?? 0
        let ws = ForwardWorkspace(model: model, batch: 1, length: V + ids.count)
        ws.load([ids], reserved: V)
        model.forward(ws, adapter: adapter)
        let vocab = model.config.vocabSize
        return Array(UnsafeBufferPointer(start: ws.logits.pointer + V * vocab, count: ids.count * vocab))
    }

    /// Mean next-token NLL over `sequences`, as PEFT's side of the fixtures computes it.
    static func meanNLL(_ model: LlamaModel, _ sequences: [[Int32]], adapter: ModelAdapter?) -> Double {
        var total = 0.0, count = 0
        let vocab = model.config.vocabSize
        for ids in sequences {
            let z = logits(model, ids, adapter: adapter)
            for t in 0..<(ids.count - 1) {
                let row = Array(z[(t * vocab)..<((t + 1) * vocab)])
                total += row.withUnsafeBufferPointer { Softmax.logSumExp($0.baseAddress!, count: vocab) } - Double(row[Int(ids[t + 1])])
                count += 1
            }
        }
        return total / Double(count)
    }
}
