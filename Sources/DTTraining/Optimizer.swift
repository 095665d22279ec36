// AdamW exactly as torch.optim.AdamW (decoupled weight decay, bias correction), HF's learning-rate
// schedules with linear warmup, and clipping by global norm as torch.nn.utils.clip_grad_norm_.
import DTKernels
import Foundation

public enum LRSchedule: String, Sendable, CaseIterable {
    case constant, linear, cosine

    /// Multiplier of the base rate at optimizer step `step` (0-based), as HF's get_*_schedule_with_warmup.
    public func factor(step: Int, warmup: Int, total: Int) -> Float {
        if step < warmup { return Float(step) / Float(max(1, warmup)) }
        switch self {
        case .constant: return 1
        case .linear: return max(0, Float(total - step) / Float(max(1, total - warmup)))
        case .cosine:
            let progress = Double(step - warmup) / Double(max(1, total - warmup))
            return Float(max(0, 0.5 * (1 + cos(Double.pi * 0.5 * 2 * progress))))
        }
    }
}

public struct AdamW {
    /// Hyper-parameters are doubles, as in PyTorch, where 1 − β and the bias corrections are computed in
    /// double precision before the float32 update (1 − Float(0.999) would be off by 1e-5 relative).
    public var beta1: Double, beta2: Double, eps: Double, weightDecay: Double
    /// Optimizer steps taken so far (bias correction uses step + 1 on the next update).
    public var step = 0
    public init(beta1: Double = 0.9, beta2: Double = 0.999, eps: Double = 1e-8, weightDecay: Double = 0) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }

    /// One update of every parameter in the arena from its gradient (torch.optim.AdamW, single-tensor path).
    public mutating func update(_ arena: ParameterArena, lr: Double) {
        step += 1
        let p = arena.values.pointer, g = arena.gradients, m = arena.firstMoment.pointer, v = arena.secondMoment.pointer
        let bc1 = 1 - pow(beta1, Double(step)), bc2 = 1 - pow(beta2, Double(step))
        let decay = Float(1 - lr * weightDecay)
        let b1 = Float(beta1), oneMinusB1 = Float(1 - beta1), b2 = Float(beta2), oneMinusB2 = Float(1 - beta2)
        let stepSize = Float(lr / bc1), bc2Root = Float(bc2.squareRoot()), epsilon = Float(eps)
        for i in 0..<arena.count {
            p[i] *= decay
            m[i] = m[i] * b1 + g[i] * oneMinusB1
            v[i] = v[i] * b2 + g[i] * g[i] * oneMinusB2
            p[i] -= stepSize * (m[i] / (v[i].squareRoot() / bc2Root + epsilon))
        }
        arena.valuesChanged()
    }
}

public enum GradientClipping {
    /// Scales g (count) so its L2 norm is at most maxNorm; returns the norm before clipping.
    @discardableResult
    public static func clip(_ g: UnsafeMutablePointer<Float>, count: Int, maxNorm: Float) -> Float {
        var sum: Double = 0
        for i in 0..<count { sum += Double(g[i]) * Double(g[i]) }
        let norm = Float(sum.squareRoot())
        guard maxNorm > 0 else { return norm }
        let coefficient = maxNorm / (norm + 1e-6)
        if coefficient < 1 { for i in 0..<count { g[i] *= coefficient } }
        return norm
    }
}
