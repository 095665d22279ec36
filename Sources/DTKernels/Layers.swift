// Elementwise and normalisation layers of the Llama block. Each forward sits beside its backward.
// Dimension letters: N rows (= B·T tokens), C channels (hidden), H query heads, K kv heads, D head dim.
import Foundation

public enum RMSNorm {
    /// y (N, C) = x / sqrt(mean(x²) + eps) · weight;  rstd (N) saved for backward.
    public static func forward(_ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>, _ y: UnsafeMutablePointer<Float>,
                               rstd: UnsafeMutablePointer<Float>?, rows: Int, channels: Int, eps: Float) {
        Parallel.ranges(rows, minimumPerWorker: 64) { _, range in for r in range {
            let xr = x + r * channels, yr = y + r * channels
            let s = 1 / (VectorMath.dot(xr, xr, count: channels) / Float(channels) + eps).squareRoot()
            rstd?[r] = s
            var c = 0
            while c + VectorMath.width <= channels {
                VectorMath.store(VectorMath.load(xr + c) * s * VectorMath.load(weight + c), yr + c)
                c += VectorMath.width
            }
            while c < channels { yr[c] = xr[c] * s * weight[c]; c += 1 }
        } }
    }

    /// dx (N, C) += dL/dx given dy (N, C); the (frozen) weight gets no gradient.
    public static func backward(_ dy: UnsafePointer<Float>, _ x: UnsafePointer<Float>, _ weight: UnsafePointer<Float>,
                                rstd: UnsafePointer<Float>, _ dx: UnsafeMutablePointer<Float>, rows: Int, channels: Int) {
        Parallel.ranges(rows, minimumPerWorker: 64) { _, range in for r in range {
            let xr = x + r * channels, dyr = dy + r * channels, dxr = dx + r * channels
            let s = rstd[r]
            typealias L = VectorMath.Lanes
            var dots = L(repeating: 0)
            var c = 0
            while c + VectorMath.width <= channels {
                dots += VectorMath.load(dyr + c) * VectorMath.load(weight + c) * VectorMath.load(xr + c)
                c += VectorMath.width
            }
            var dot = dots.sum()
            while c < channels { dot += dyr[c] * weight[c] * xr[c]; c += 1 }
            let k = dot * s * s * s / Float(channels)
            c = 0
            while c + VectorMath.width <= channels {
                let g = VectorMath.load(dyr + c) * VectorMath.load(weight + c) * s - k * VectorMath.load(xr + c)
                VectorMath.store(VectorMath.load(dxr + c) + g, dxr + c)
                c += VectorMath.width
            }
            while c < channels { dxr[c] += dyr[c] * weight[c] * s - k * xr[c]; c += 1 }
        } }
    }
}

/// Rotary position embedding in the rotate-half convention of HF checkpoints: within each head, element i
/// pairs with i + D/2. GGUF Llama weights are converted to this order when loaded.
public struct RoPETable {
    public let headDim: Int
    public let maxPositions: Int
    /// cos, sin (maxPositions, D/2), both times `scale`
    public let cos: [Float], sin: [Float]

    /// `inverseFrequencies` (D/2) already include any scaling (Llama-3, LongRoPE or GGUF rope_freqs); `scale`
    /// multiplies cos and sin (LongRoPE's attention factor), so a rotated vector is scaled too.
    public init(headDim: Int, maxPositions: Int, inverseFrequencies: [Float], scale: Float = 1) {
        precondition(inverseFrequencies.count == headDim / 2)
        self.headDim = headDim
        self.maxPositions = maxPositions
        var c = [Float](repeating: 0, count: maxPositions * headDim / 2), s = c
        for p in 0..<maxPositions {
            for i in 0..<headDim / 2 {
                let angle = Float(p) * inverseFrequencies[i]
                c[p * headDim / 2 + i] = Foundation.cos(angle) * scale
                s[p * headDim / 2 + i] = Foundation.sin(angle) * scale
            }
        }
        cos = c; sin = s
    }

    /// In place on x (rows, heads, D); row r has position positions[r]. `inverse` applies the transpose
    /// (scale · Rᵀ: that is the backward pass).
    public func apply(_ x: UnsafeMutablePointer<Float>, rows: Int, heads: Int, positions: UnsafePointer<Int32>, inverse: Bool = false) {
        let half = headDim / 2
        cos.withUnsafeBufferPointer { cp in
            sin.withUnsafeBufferPointer { sp in
                for r in 0..<rows {
                    let p = Int(positions[r])
                    precondition(p < maxPositions, "position \(p) beyond the RoPE table (\(maxPositions))")
                    let cr = cp.baseAddress! + p * half, sr = sp.baseAddress! + p * half
                    for h in 0..<heads {
                        let v = x + (r * heads + h) * headDim
                        for i in 0..<half {
                            let a = v[i], b = v[i + half]
                            let sn = inverse ? -sr[i] : sr[i]
                            v[i] = a * cr[i] - b * sn
                            v[i + half] = b * cr[i] + a * sn
                        }
                    }
                }
            }
        }
    }
}

/// Gemma 2's soft-capping of attention scores and final logits: y = cap · tanh(x / cap), near x for |x| ≪ cap,
/// never beyond ±cap. The backward needs only the capped values: dy/dx = 1 − (y / cap)².
public enum SoftCap {
    /// x (count) ← cap · tanh(x / cap), on the calling thread (callers run it per row or per tile).
    @inline(__always)
    public static func forward(_ x: UnsafeMutablePointer<Float>, count: Int, cap: Float) {
        let inverse = 1 / cap
        for i in 0..<count { x[i] = cap * tanhf(x[i] * inverse) }
    }

    /// d (count) ← d ⊙ (1 − (y / cap)²): from dL/dy to dL/dx, given the capped values y.
    @inline(__always)
    public static func backward(_ d: UnsafeMutablePointer<Float>, capped y: UnsafePointer<Float>, count: Int, cap: Float) {
        let inverse = 1 / cap
        for i in 0..<count { let t = y[i] * inverse; d[i] *= 1 - t * t }
    }
}

/// Gemma's MLP gate: h = gelu_tanh(gate) · up, gelu_tanh(x) = x/2 · (1 + tanh(√(2/π) · (x + 0.044715 x³)))
/// (PyTorch's `gelu(approximate="tanh")`, HF `gelu_pytorch_tanh`).
public enum GeGLU {
    static let c = Float((2 / Double.pi).squareRoot()), a: Float = 0.044715

    /// h (N, I) = gelu_tanh(gate) · up
    public static func forward(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, _ h: UnsafeMutablePointer<Float>, count: Int) {
        Parallel.ranges(count, minimumPerWorker: 1 << 14) { _, range in for i in range {
            let x = gate[i]
            h[i] = 0.5 * x * (1 + tanhf(c * (x + a * x * x * x))) * up[i]
        } }
    }

    /// dgate, dup (N, I) from dh (N, I).
    public static func backward(_ dh: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                                dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, count: Int) {
        Parallel.ranges(count, minimumPerWorker: 1 << 14) { _, range in for i in range {
            let x = gate[i]
            let t = tanhf(c * (x + a * x * x * x))
            let gelu = 0.5 * x * (1 + t)
            let slope = 0.5 * (1 + t) + 0.5 * x * (1 - t * t) * c * (1 + 3 * a * x * x)
            dgate[i] = dh[i] * up[i] * slope
            dup[i] = dh[i] * gelu
        } }
    }
}

public enum SwiGLU {
    /// h (N, I) = silu(gate) · up
    public static func forward(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, _ h: UnsafeMutablePointer<Float>, count: Int) {
        Parallel.ranges(count, minimumPerWorker: 1 << 14) { _, range in
            if VectorMath.usesAVX512 {
                let o = range.lowerBound
                return VectorMath.swiGLUAVX512(gate: gate + o, up: up + o, h + o, count: range.count)
            }
            typealias L = VectorMath.Lanes
            var i = range.lowerBound
            while i + VectorMath.width <= range.upperBound {
                let g = VectorMath.load(gate + i)
                VectorMath.store(g / (1 + VectorMath.exp(-g)) * VectorMath.load(up + i), h + i)
                i += VectorMath.width
            }
            while i < range.upperBound {
                let g = gate[i]
                h[i] = g / (1 + VectorMath.exp(L(repeating: -g))[0]) * up[i]
                i += 1
            }
        }
    }

    /// dgate, dup (N, I) from dh (N, I).
    public static func backward(_ dh: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                                dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, count: Int) {
        Parallel.ranges(count, minimumPerWorker: 1 << 14) { _, range in
            if VectorMath.usesAVX512 {
                let o = range.lowerBound
                return VectorMath.swiGLUBackwardAVX512(dh + o, gate: gate + o, up: up + o, dgate: dgate + o, dup: dup + o, count: range.count)
            }
            typealias L = VectorMath.Lanes
            @inline(__always) func lanes(_ g: L, _ dh: L, _ up: L) -> (dgate: L, dup: L) {
                let sig = 1 / (1 + VectorMath.exp(-g))
                return (dh * up * sig * (1 + g * (1 - sig)), dh * g * sig)
            }
            var i = range.lowerBound
            while i + VectorMath.width <= range.upperBound {
                let r = lanes(VectorMath.load(gate + i), VectorMath.load(dh + i), VectorMath.load(up + i))
                VectorMath.store(r.dgate, dgate + i)
                VectorMath.store(r.dup, dup + i)
                i += VectorMath.width
            }
            while i < range.upperBound {
                let r = lanes(L(repeating: gate[i]), L(repeating: dh[i]), L(repeating: up[i]))
                dgate[i] = r.dgate[0]
                dup[i] = r.dup[0]
                i += 1
            }
        }
    }
}

public enum Vector {
    @inline(__always) public static func add(_ a: UnsafeMutablePointer<Float>, _ b: UnsafePointer<Float>, count: Int) {
        for i in 0..<count { a[i] += b[i] }
    }
    /// Bias (cols) added to every row of y (rows, cols).
    @inline(__always) public static func addBias(_ y: UnsafeMutablePointer<Float>, _ bias: UnsafePointer<Float>, rows: Int, cols: Int) {
        for r in 0..<rows { add(y + r * cols, bias, count: cols) }
    }

    /// y (rows, cols) = scale (cols) ⊙ x (rows, cols) in every row (+ y when `accumulate`); x may be y.
    public static func scaleColumns(_ x: UnsafePointer<Float>, by scale: UnsafePointer<Float>, rows: Int, cols: Int,
                                    into y: UnsafeMutablePointer<Float>, accumulate: Bool) {
        Parallel.ranges(rows, minimumPerWorker: max(1, (1 << 14) / max(1, cols))) { _, range in
            for r in range {
                let xr = x + r * cols, yr = y + r * cols
                if accumulate { for c in 0..<cols { yr[c] += scale[c] * xr[c] } } else { for c in 0..<cols { yr[c] = scale[c] * xr[c] } }
            }
        }
    }

    /// out (cols) += Σ over rows of a (rows, cols) ⊙ b (rows, cols): the dot product of each column pair.
    public static func accumulateColumnDots(_ a: UnsafePointer<Float>, _ b: UnsafePointer<Float>, rows: Int, cols: Int,
                                            into out: UnsafeMutablePointer<Float>) {
        // Workers take column ranges (each reads its slice of every row), so no partial sums need merging.
        Parallel.ranges(cols, minimumPerWorker: max(16, (1 << 14) / max(1, rows))) { _, range in
            for r in 0..<rows {
                let ar = a + r * cols, br = b + r * cols
                for c in range { out[c] += ar[c] * br[c] }
            }
        }
    }
}

public enum Softmax {
    /// log-sum-exp of a row, numerically stable (partial sums of 512 terms added in Double).
    public static func logSumExp(_ x: UnsafePointer<Float>, count: Int) -> Double {
        let m = VectorMath.max(x, count: count)
        guard m > -.infinity else { return -.infinity }
        var s: Double = 0
        var i = 0
        withUnsafeTemporaryAllocation(of: Float.self, capacity: chunk) { scratch in
            while i < count {
                let n = min(chunk, count - i)
                s += Double(VectorMath.expShifted(x + i, shift: m, into: scratch.baseAddress!, count: n))
                i += n
            }
        }
        return Double(m) + log(s)
    }

    /// Replaces x by softmax(x) · factor and returns log-sum-exp(x) (accumulated like `logSumExp`).
    public static func softmaxInPlace(_ x: UnsafeMutablePointer<Float>, count: Int, factor: Float = 1) -> Double {
        let m = VectorMath.max(x, count: count)
        var s: Double = 0
        var i = 0
        while i < count {
            let n = min(chunk, count - i)
            s += Double(VectorMath.expShifted(x + i, shift: m, into: x + i, count: n))
            i += n
        }
        VectorMath.scale(x, by: Float(Double(factor) / s), count: count)
        return Double(m) + log(s)
    }

    static let chunk = 512
}
