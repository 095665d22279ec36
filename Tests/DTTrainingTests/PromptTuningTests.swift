// Prompt tuning: the gradient into the prompt embeddings against finite differences (tiny random model),
// the frozen base gets none, and TEXT initialisation copies the text's token embeddings.
import DTKernels
import DTModel
import DTTokenizer
import DTTraining
import Foundation
import TestSupport
import XCTest

final class PromptTuningTests: XCTestCase {
    func testPromptGradientMatchesFiniteDifferences() throws {
        let model = try LlamaModel(source: ModelSource(path: TinyModel.write()))
        let adapter = PromptTuningAdapter(model: model, virtualTokens: 3)
        var rng = SeededRandom(seed: 2)
        adapter.arena.set("prompt_embeddings", (0..<(3 * 32)).map { _ in rng.normal() })
        let ws = ForwardWorkspace(model: model, batch: 2, length: 9, mode: .training(recompute: false))
        let sequences: [[Int32]] = [[4, 8, 15, 16, 23, 42].map { $0 % 64 }, [7, 9, 11]]
        // Labels: V = 3 virtual positions ignored, then next-token targets.
        var labels = [Int32](repeating: -100, count: 18)
        for (b, s) in sequences.enumerated() { for t in 0..<(s.count - 1) { labels[b * 9 + 3 + t] = s[t + 1] } }
        func loss() -> Double {
            ws.load(sequences, reserved: 3)
            model.forward(ws, adapter: adapter)
            return model.crossEntropy(logits: ws.logits.pointer, labels: labels, rows: ws.rows, gradScale: 1) / 7
        }
        adapter.arena.zeroGradients()
        ws.load(sequences, reserved: 3)
        model.forward(ws, adapter: adapter)
        _ = model.crossEntropy(logits: ws.logits.pointer, labels: labels, rows: ws.rows, gradScale: 1.0 / 7)
        model.backward(ws, adapter: adapter)
        let g = Array(UnsafeBufferPointer(start: adapter.arena.gradients, count: adapter.arena.count))
        let p = adapter.arena.values.pointer
        var numeric: [Float] = [], analytic: [Float] = []
        for i in stride(from: 0, to: adapter.arena.count, by: 7) {
            let x = p[i]
            p[i] = x + 1e-2; let up = loss()
            p[i] = x - 1e-2; let down = loss()
            p[i] = x
            numeric.append(Float((up - down) / 2e-2)); analytic.append(g[i])
        }
        var diff: Float = 0, norm: Float = 0
        for (a, n) in zip(analytic, numeric) { diff += (a - n) * (a - n); norm += n * n }
        XCTAssertLessThan((diff / norm).squareRoot(), 1e-3)
        XCTAssertGreaterThan(norm, 0)
    }

    /// Invariant: TEXT init = the embeddings of the text's tokens, repeated to V.
    func testTextInitialisationCopiesTokenEmbeddings() throws {
        let dir = TinyModel.writeWithTokenizer()
        let model = try LlamaModel(source: ModelSource(path: dir))
        let tokenizer = try Tokenizer(tokenizerJSON: dir + "/tokenizer.json")
        let adapter = PromptTuningAdapter(model: model, virtualTokens: 5)
        try adapter.initialise(.text, text: "the", model: model, tokenizer: tokenizer, seed: 0)
        let ids = tokenizer.encode("the")
        let values = adapter.arena.array("prompt_embeddings")
        for v in 0..<5 {
            let id = Int(ids[v % ids.count])
            XCTAssertEqual(Array(values[(v * 32)..<(v * 32 + 32)]), Array(UnsafeBufferPointer(start: model.embedding.densePointer! + id * 32, count: 32)))
        }
    }
}
