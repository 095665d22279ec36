// AdamW, the learning-rate schedules and gradient clipping against torch (fixture made by
// scripts/make_optimizer_fixtures.py with torch.optim.AdamW, LambdaLR and clip_grad_norm_).
import DTTraining
import Foundation
import XCTest

final class OptimizerTests: XCTestCase {
    func reference() throws -> [String: Any] {
        let path = try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/adamw_reference.json", ofType: nil))
        return try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: path))) as? [String: Any])
    }
    func floats(_ any: Any?) -> [Float] { (any as! [NSNumber]).map(\.floatValue) }

    /// Invariant: six AdamW steps (weight decay, bias correction, cosine schedule with warmup) give torch's
    /// parameters and moments to float precision.
    func testAdamWMatchesTorch() throws {
        let ref = try reference()
        let arena = ParameterArena([(name: "p", shape: [10])])
        arena.set("p", floats(ref["initial"]))
        let b = (ref["betas"] as! [NSNumber]).map(\.doubleValue)
        var adam = AdamW(beta1: b[0], beta2: b[1], eps: (ref["eps"] as! NSNumber).doubleValue,
                         weightDecay: (ref["weight_decay"] as! NSNumber).doubleValue)
        let grads = (ref["grads"] as! [[NSNumber]]).map { $0.map(\.floatValue) }
        let expected = (ref["params_after_each_step"] as! [[NSNumber]]).map { $0.map(\.floatValue) }
        let lrs = floats(ref["lrs"])
        let base = Float((ref["base_lr"] as! NSNumber).doubleValue)
        for step in 0..<6 {
            XCTAssertEqual(base * LRSchedule.cosine.factor(step: step, warmup: 2, total: 6), lrs[step], accuracy: 1e-9)
            arena.gradients.update(from: grads[step], count: 10)
            adam.update(arena, lr: (ref["lrs"] as! [NSNumber])[step].doubleValue)
            for (a, b) in zip(arena.array("p"), expected[step]) { XCTAssertEqual(a, b, accuracy: 2e-7 * max(1, abs(b)), "step \(step)") }
        }
        for (a, b) in zip(Array(arena.firstMoment.buffer), floats(ref["exp_avg_final"])) { XCTAssertEqual(a, b, accuracy: 1e-7) }
        for (a, b) in zip(Array(arena.secondMoment.buffer), floats(ref["exp_avg_sq_final"])) { XCTAssertEqual(a, b, accuracy: 1e-9) }
    }

    /// Invariant: constant/linear/cosine with warmup equal HF's get_*_schedule_with_warmup.
    func testSchedulesMatchTransformers() throws {
        let s = try XCTUnwrap(try reference()["schedules"] as? [String: Any])
        for (name, schedule) in [("constant_with_warmup", LRSchedule.constant), ("linear_with_warmup", .linear), ("cosine_with_warmup", .cosine)] {
            let want = floats(s[name])
            for k in 0..<10 { XCTAssertEqual(schedule.factor(step: k, warmup: 3, total: 10), want[k], accuracy: 1e-6, "\(name) step \(k)") }
        }
    }

    /// Invariant: clipping by global norm equals torch.nn.utils.clip_grad_norm_ (norm reported before clipping).
    func testClippingMatchesTorch() throws {
        let c = try XCTUnwrap(try reference()["clip"] as? [String: Any])
        var g = (c["grads"] as! [[Any]]).flatMap { t in (t as? [NSNumber])?.map(\.floatValue) ?? (t as! [[NSNumber]]).flatMap { $0.map(\.floatValue) } }
        let want = (c["clipped"] as! [[Any]]).flatMap { t in (t as? [NSNumber])?.map(\.floatValue) ?? (t as! [[NSNumber]]).flatMap { $0.map(\.floatValue) } }
        let norm = GradientClipping.clip(&g, count: g.count, maxNorm: Float((c["max_norm"] as! NSNumber).doubleValue))
        XCTAssertEqual(norm, Float((c["total_norm"] as! NSNumber).doubleValue), accuracy: 1e-5)
        for (a, b) in zip(g, want) { XCTAssertEqual(a, b, accuracy: 1e-6) }
    }
}
