// `recompute: auto` (the default): the memory estimate at start decides whether backward recomputes each layer.
import DTKernels
import DTModel
import DTParallel
import DTRuns
import DTTraining
import Foundation
import TestSupport
import XCTest

final class RecomputeChoiceTests: XCTestCase {
    /// Invariant: auto turns recomputation on exactly when keeping every layer's activations would take more than
    /// 80% of the available memory (here a stated 1 GiB) — at a length where recomputing does fit — says why with
    /// the workspace and both estimates, and stays off one step shorter, and when the available memory is unknown.
    func testAutoRecomputesOnlyWhenEveryLayersActivationsWouldNotFit() throws {
        var shape = TinyModel.Shape(); shape.layers = 4
        let model = try LlamaModel(source: ModelSource(path: TinyModel.write(shape)))
        let config = TrainConfig(), comm = WorldOfOne(), gib = Double(1 << 30)
        XCTAssertEqual(config.recompute, .auto, "auto is the default")
        func bytes(_ length: Int, recompute: Bool) -> Double {
            ForwardWorkspace.estimatedBytes(model: model, batch: 4, length: length, mode: .training(recompute: recompute))
        }
        var length = 64   // the first length (in steps of 64) whose kept activations exceed 80% of 1 GiB
        while bytes(length, recompute: false) <= 0.8 * gib { length += 64 }
        XCTAssertLessThan(bytes(length, recompute: true), 0.5 * gib, "recomputing fits there, so the choice matters")

        let on = MemoryPreflight.chooseRecompute(config, model: model, comm: comm, shape: (4, length), available: gib)
        XCTAssertTrue(on.on, on.reason)
        for part in ["4 × \(length) tokens", "of the 1.0 GiB available", "recomputing each layer in backward needs about"] {
            XCTAssertTrue(on.reason.contains(part), "lacks \(part): \(on.reason)")
        }
        let off = MemoryPreflight.chooseRecompute(config, model: model, comm: comm, shape: (4, length - 64), available: gib)
        XCTAssertFalse(off.on, off.reason)
        XCTAssertTrue(off.reason.contains("fit in the 1.0 GiB available"), off.reason)
        XCTAssertFalse(MemoryPreflight.chooseRecompute(config, model: model, comm: comm, shape: (4, length), available: nil).on)

        // DoRA's saved frozen outputs count too: at a length where LoRA's activations fit, DoRA's may not.
        var dora = config; dora.useDoRA = true
        let outputs = Double(TensorNames.Projection.allCases.reduce(0) { $0 + model.layers[0].projections[$1]!.rows })
        let tight = bytes(length - 64, recompute: false) + 0.5 * 4 * Double(4 * (length - 64)) * outputs * 4
        XCTAssertFalse(MemoryPreflight.chooseRecompute(config, model: model, comm: comm, shape: (4, length - 64), available: tight / 0.8).on)
        XCTAssertTrue(MemoryPreflight.chooseRecompute(dora, model: model, comm: comm, shape: (4, length - 64), available: tight / 0.8).on)
    }

    /// Invariant: the key reads true, false and auto as flag text and from YAML (a YAML boolean is accepted), the
    /// resolved config.yaml reads back to the same mode, and anything else is refused naming the choices.
    func testRecomputeKeyReadsBooleansAndAuto() throws {
        for (text, mode) in [("true", RecomputeMode.on), ("false", .off), ("auto", .auto)] {
            var c = TrainConfig()
            try c.set("recompute", text, source: "test")
            XCTAssertEqual(c.recompute, mode)
            XCTAssertEqual(c.recomputes, mode == .on)
        }
        for (yaml, mode) in [("recompute: true", RecomputeMode.on), ("recompute: false", .off), ("recompute: auto", .auto)] {
            var c = TrainConfig()
            try c.apply(yaml: yaml + "\n", source: "run.yaml")
            XCTAssertEqual(c.recompute, mode, yaml)
            var back = TrainConfig()
            try back.apply(yaml: c.yaml, source: "config.yaml")
            XCTAssertEqual(back.recompute, mode, "config.yaml round trip")
        }
        var c = TrainConfig()
        XCTAssertThrowsError(try c.set("recompute", "sometimes", source: "test")) { e in
            XCTAssertTrue("\(e)".contains("auto | true | false"), "\(e)")
        }
    }
}
