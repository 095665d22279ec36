// Pre-quantized bitsandbytes NF4 checkpoints (scripts/make_bnb_fixtures.py): the tiny llama with its
// projections saved as transformers saves a `load_in_4bit` model.
import DTFormats
import DTModel
import Foundation
import XCTest

extension GoldenLogitsTests {
    /// Invariant: a bitsandbytes NF4 + DQ checkpoint gives transformers' logits on bitsandbytes' dequantized
    /// weights (1e-4), whether kept as NF4 (QLoRA: nf4 / as-stored) or dequantized at load (fp32).
    func testBitsandbytesCheckpointMatchesTransformers() throws {
        let dir = try fixturePath("tiny/llama_bnb_nf4")
        for precision in [WeightPrecision.nf4, .asStored, .fp32] {
            try tinyLogits(dir, expected: dir + "/expected.json", precision: precision)
        }
        let model = try LlamaModel(source: ModelSource(path: dir), precision: .nf4)
        guard case .nf4 = model.layers[0].projections[.q]!.storage else { return XCTFail("q_proj should stay NF4") }
    }

    /// Invariant: a bitsandbytes checkpoint without double quantization is refused with the file, the tensor
    /// and what is expected — not misread.
    func testBitsandbytesWithoutDoubleQuantizationIsRefused() throws {
        let dir = try fixturePath("tiny/llama_bnb_nf4_nodq")
        XCTAssertThrowsError(try LlamaModel(source: ModelSource(path: dir), precision: .nf4)) { error in
            let text = "\(error)"
            XCTAssertTrue(text.contains("model.safetensors"), text)
            XCTAssertTrue(text.contains("quant_state.bitsandbytes__nf4"), text)
            XCTAssertTrue(text.contains("double quantization"), text)
        }
    }
}
