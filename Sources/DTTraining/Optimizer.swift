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
    public var beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0
    /// Optimizer steps taken so far (bias correction uses step + 1 on the next update).
    public var step = 0
    public init(beta1: Float = 0.9, beta2: Float = 0.999, eps: Float = 1e-8, weightDecay: Float = 0) {
        self.beta1 = beta1; self.beta2 = beta2; self.eps = eps; self.weightDecay = weightDecay
    }

    /// One update of every parameter in the arena from its gradient.
    public mutating func update(_ arena: ParameterArena, lr: Float) {
        step += 1
        let p = arena.values.pointer, g = arena.gradients, m = arena.firstMoment.pointer, v = arena.secondMoment.pointer
        let bc1 = 1 - pow(beta1, Float(step)), bc2 = 1 - pow(beta2, Float(step))
        let stepSize = lr / bc1
        let bc2Root = bc2.squareRoot()
        let decay = 1 - lr * weightDecay
        for i in 0..<arena.count {
            p[i] *= decay
            m[i] = beta1 * m[i] + (1 - beta1) * g[i]
            v[i] = beta2 * v[i] + (1 - beta2) * g[i] * g[i]
            p[i] -= stepSize * m[i] / (v[i].squareRoot() / bc2Root + eps)
        }
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
