// QLoRA's NF4 base against bitsandbytes on the real default model: with every projection quantized to
// NF4 + double quantization, dtrain's mean NLL on the three golden texts equals the NLL of transformers with
// the same weights quantized and dequantized by bitsandbytes (scripts/make_nf4_fixtures.py). This pins down
// that the loss rise of `quant: nf4` over the Q4_1 model is the NF4 format's, not an error of dtrain's.
import DTKernels
import DTModel
import Foundation
import TestSupport
import XCTest

final class NF4ModelTests: XCTestCase {
    /// Invariant: NF4 (dtrain) mean NLL = NF4 (bitsandbytes) mean NLL within 2e-3 on each text, for the base
    /// as stored (Q4_1, as-stored precision) and as NF4; the as-stored base also equals transformers' fp32.
    func testNF4BaseMatchesBitsandbytes() throws {
        guard let path = TestPaths.defaultModel else {
            if TestPaths.modelRequired { XCTFail("default model missing") }
            return
        }
        let texts = try XCTUnwrap(try loadJSON(try fixturePath("smollm2_golden.json"))["texts"] as? [[String: Any]])
        let golden = try loadJSON(try fixturePath("smollm2_nf4_golden.json"))
        let source = try ModelSource(path: path)
        for (precision, key, tolerance) in [(WeightPrecision.asStored, "mean_nll_fp32", 1e-4), (.nf4, "mean_nll_nf4", 2e-3)] {
            let model = try LlamaModel(source: source, precision: precision, maxPositions: 512)
            let expected = (golden[key] as! [NSNumber]).map(\.doubleValue)
            let V = model.config.vocabSize
            for (i, text) in texts.enumerated() {
                let ids = (text["ids"] as! [NSNumber]).map { Int32($0.intValue) }
                let ws = ForwardWorkspace(model: model, batch: 1, length: ids.count)
                ws.load([ids])
                model.forward(ws)
                var nll = 0.0
                for t in 0..<(ids.count - 1) {
                    nll += Softmax.logSumExp(ws.logits.pointer + t * V, count: V) - Double(ws.logits[t * V + Int(ids[t + 1])])
                }
                nll /= Double(ids.count - 1)
                XCTAssertEqual(nll, expected[i], accuracy: tolerance, "\(precision.rawValue), text \(i): mean NLL")
            }
        }
    }
}
