// Interoperability with the reference implementations (fixtures and their generator:
// scripts/make_interop_fixtures.py): PEFT-made adapters loaded by dtrain give PEFT's logits; dtrain-made
// adapters loaded by PEFT give dtrain's loss; NF4 + double quantization matches bitsandbytes.
import DTFormats
import DTKernels
import DTModel
import DTTraining
import Foundation
import XCTest

final class InteropTests: XCTestCase {
    func path(_ name: String) throws -> String { try InteropFixtures.path(name, madeBy: "make_interop_fixtures.py") }
    func json(_ name: String) throws -> [String: Any] { try InteropFixtures.json(try path(name)) }
    func model() throws -> LlamaModel { try LlamaModel(source: ModelSource(path: try path("tiny_model"))) }
    func logits(_ model: LlamaModel, _ ids: [Int32], adapter: ModelAdapter?) -> [Float] { InteropFixtures.logits(model, ids, adapter: adapter) }

    func checkLogits(_ adapterDir: String, _ expected: String, file: StaticString = #filePath, line: UInt = #line) throws {
        let m = try model()
        let ref = try json(expected)
        let ids = (ref["ids"] as! [[NSNumber]])[0].map { Int32($0.intValue) }
        let want = (ref["logits"] as! [[NSNumber]]).flatMap { $0.map(\.floatValue) }
        let adapter = try AdapterLoader.load(try path(adapterDir), model: m)
        let got = logits(m, ids, adapter: adapter)
        let maxDiff = zip(got, want).map { abs($0 - $1) }.max()!
        XCTAssertLessThanOrEqual(maxDiff, 1e-4, "\(adapterDir): max |logit − PEFT logit|", file: file, line: line)
        if let base = ref["base_logits"] as? [[NSNumber]] {
            let baseDiff = zip(logits(m, ids, adapter: nil), base.flatMap { $0.map(\.floatValue) }).map { abs($0 - $1) }.max()!
            XCTAssertLessThanOrEqual(baseDiff, 1e-4, "base model", file: file, line: line)
            XCTAssertGreaterThan(zip(got, base.flatMap { $0.map(\.floatValue) }).map { abs($0 - $1) }.max()!, 1e-2, "the adapter must matter", file: file, line: line)
        }
    }

    /// Invariant: a PEFT LoRA adapter (all seven targets; and rsLoRA on q/v) gives PEFT's logits in dtrain.
    func testPEFTLoRAAdapterGivesPEFTLogits() throws {
        try checkLogits("peft_lora", "peft_lora_expected.json")
        try checkLogits("peft_lora_rslora", "peft_lora_rslora_expected.json")
    }

    /// Invariant: a PEFT prompt-tuning adapter gives PEFT's logits at the real token positions.
    func testPEFTPromptAdapterGivesPEFTLogits() throws {
        try checkLogits("peft_prompt", "peft_prompt_expected.json")
    }

    /// Invariant: adapters saved by dtrain, loaded by PEFT onto the HF model, give the same mean NLL as dtrain
    /// computes (within 1e-4) — the files mean the same thing to both.
    func testDtrainAdaptersMeanTheSameInPEFT() throws {
        let m = try model()
        let ref = try json("dtrain_roundtrip_expected.json")
        let sequences = (ref["sequences"] as! [[NSNumber]]).map { $0.map { Int32($0.intValue) } }
        func meanNLL(_ adapter: ModelAdapter?) -> Double { InteropFixtures.meanNLL(m, sequences, adapter: adapter) }
        XCTAssertEqual(meanNLL(nil), (ref["base_mean_nll"] as! NSNumber).doubleValue, accuracy: 1e-4)
        let lora = try AdapterLoader.load(try path("dtrain_lora"), model: m)
        XCTAssertEqual(meanNLL(lora), (ref["lora_mean_nll"] as! NSNumber).doubleValue, accuracy: 1e-4)
        let prompt = try AdapterLoader.load(try path("dtrain_prompt"), model: m)
        XCTAssertEqual(meanNLL(prompt), (ref["prompt_mean_nll"] as! NSNumber).doubleValue, accuracy: 1e-4)
    }

    /// Invariant: NF4 + double quantization equals bitsandbytes' quantize_4bit(nf4, compress_statistics=True,
    /// blocksize=64): the same 4-bit codes and offset, the same nested absmax, 8-bit absmax codes equal except
    /// bitsandbytes' approximate CPU search (≤ 2 of 768 one step off), and the same dequantized values.
    func testNF4MatchesBitsandbytes() throws {
        let input = try SafetensorsFile(path: try path("nf4_input.safetensors")).floats("weight")
        let ref = try SafetensorsFile(path: try path("nf4_expected.safetensors"))
        func bytes(_ name: String) throws -> [UInt8] { Array(ref.data(of: try XCTUnwrap(ref.tensors[name]))) }
        let q = input.withUnsafeBufferPointer { NF4.quantize($0.baseAddress!, count: input.count) }
        XCTAssertEqual(q.codes, try bytes("codes"), "packed 4-bit codes")
        XCTAssertEqual(q.offset, try ref.floats("offset")[0])
        XCTAssertEqual(q.nestedAbsmax, try ref.floats("nested_absmax"))
        XCTAssertEqual(NF4.dynamicMap, try ref.floats("nested_code"), "signed dynamic map")
        let refAbsmaxCodes = try bytes("absmax_codes")
        let offByOne = zip(q.quantizedAbsmax, refAbsmaxCodes).filter { $0 != $1 }
        XCTAssertLessThanOrEqual(offByOne.count, 2)
        XCTAssertTrue(offByOne.allSatisfy { abs(Int($0) - Int($1)) == 1 })
        // Decoding bitsandbytes' own state reproduces its dequantization exactly.
        var theirs = q
        theirs.quantizedAbsmax = refAbsmaxCodes
        var out = [Float](repeating: 0, count: input.count)
        out.withUnsafeMutableBufferPointer { NF4.dequantize(theirs, into: $0.baseAddress!) }
        XCTAssertEqual(out, try ref.floats("dequantized"))
        XCTAssertEqual(NF4.absmax(theirs), try ref.floats("absmax_fp32"))
        // And our own state is within one dynamic-map step of theirs on the blocks that differ.
        var mine = [Float](repeating: 0, count: input.count)
        mine.withUnsafeMutableBufferPointer { NF4.dequantize(q, into: $0.baseAddress!) }
        let relative = zip(mine, out).map { abs($0 - $1) }.reduce(0, +) / out.map(abs).reduce(0, +)
        XCTAssertLessThan(relative, 1e-3)
    }
}
