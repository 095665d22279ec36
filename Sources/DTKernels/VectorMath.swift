// Vectorised exp for the element-wise hot loops (SwiGLU, softmax, cross-entropy). libm's expf is called one
// element at a time; this evaluates eight lanes at once with the Cephes polynomial (relative error ≤ 2 ulp
// in the normal range, tested against expf). Inputs below −87.34 give e^−87.34 ≈ 1.2e−38 instead of a
// denormal or zero; inputs above 88.38 give e^88.38. Callers that need exact zeros (masked keys) write them.
// Swift compiles this module for baseline x86-64 (SSE), so where the CPU has AVX-512F the row loops below
// (exp-shift-sum, max, scale, dot, softmax backward, SwiGLU) run CVectorMath's sixteen-lane versions of the
// same arithmetic (with FMA).
import CVectorMath

public enum VectorMath {
    public typealias Lanes = SIMD8<Float>
    public static let width = 8

    /// Whether the row loops run CVectorMath's AVX-512 code (cpuid once; tests switch it to compare).
    public nonisolated(unsafe) static var usesAVX512 = Attention.hasAVX512F

    @inline(__always)
    public static func exp(_ x: Lanes) -> Lanes {
        let lo = Lanes(repeating: -87.336_544_75), hi = Lanes(repeating: 88.376_262_66)
        let x = x.replacing(with: lo, where: x .< lo).replacing(with: hi, where: x .> hi)   // (pointwiseMin is not inlined)
        // n = round(x / ln 2) with the 1.5·2^23 trick: the sum's low mantissa bits hold n.
        let magic = Lanes(repeating: 12_582_912)
        let shifted = x * 1.442_695_04 + magic
        let n = shifted - magic
        let r = x - n * 0.693_359_375 + n * 2.121_944_40e-4
        var p = Lanes(repeating: 1.987_569_150_0e-4)
        p = p * r + 1.398_199_950_7e-3
        p = p * r + 8.333_451_907_3e-3
        p = p * r + 4.166_579_589_4e-2
        p = p * r + 1.666_666_545_9e-1
        p = p * r + 5.000_000_120_1e-1
        let y = p * (r * r) + r + 1
        let integer = unsafeBitCast(shifted, to: SIMD8<Int32>.self) &- 0x4B40_0000
        let scale = unsafeBitCast((integer &+ 127) &<< 23, to: Lanes.self)
        return y * scale
    }

    @inline(__always) public static func load(_ p: UnsafePointer<Float>) -> Lanes {
        UnsafeRawPointer(p).loadUnaligned(as: Lanes.self)
    }

    @inline(__always) public static func store(_ v: Lanes, _ p: UnsafeMutablePointer<Float>) {
        UnsafeMutableRawPointer(p).storeBytes(of: v, as: Lanes.self)
    }

    /// y[i] = exp(x[i] − shift) for i < count; returns Σ y (in Float, per-lane partial sums).
    @inline(__always)
    public static func expShifted(_ x: UnsafePointer<Float>, shift: Float, into y: UnsafeMutablePointer<Float>, count: Int) -> Float {
        if usesAVX512 { return dt_vm_exp_shifted(x, shift, y, count) }
        var sum = Lanes(repeating: 0)
        var i = 0
        while i + width <= count {
            let e = exp(load(x + i) - shift)
            store(e, y + i)
            sum += e
            i += width
        }
        var total = sum.sum()
        while i < count {
            let e = exp(Lanes(repeating: x[i] - shift))[0]
            y[i] = e
            total += e
            i += 1
        }
        return total
    }

    /// max of x[0..<count] (−∞ when empty).
    @inline(__always)
    public static func max(_ x: UnsafePointer<Float>, count: Int) -> Float {
        if usesAVX512 { return dt_vm_max(x, count) }
        var m = Lanes(repeating: -.infinity)
        var i = 0
        while i + width <= count { let v = load(x + i); m.replace(with: v, where: v .> m); i += width }
        var result = -Float.infinity
        for lane in 0..<width { result = Swift.max(result, m[lane]) }
        while i < count { result = Swift.max(result, x[i]); i += 1 }
        return result
    }

    /// x[i] *= factor.
    @inline(__always)
    public static func scale(_ x: UnsafeMutablePointer<Float>, by factor: Float, count: Int) {
        if usesAVX512 { return dt_vm_scale(x, factor, count) }
        var i = 0
        while i + width <= count { store(load(x + i) * factor, x + i); i += width }
        while i < count { x[i] *= factor; i += 1 }
    }

    /// Σ x[i]·y[i].
    @inline(__always)
    public static func dot(_ x: UnsafePointer<Float>, _ y: UnsafePointer<Float>, count: Int) -> Float {
        if usesAVX512 { return dt_vm_dot(x, y, count) }
        var s = Lanes(repeating: 0)
        var i = 0
        while i + width <= count { s += load(x + i) * load(y + i); i += width }
        var total = s.sum()
        while i < count { total += x[i] * y[i]; i += 1 }
        return total
    }

    /// Softmax backward of a row of probabilities p: d[i] = p[i] · (d[i] − Σ p·d) · scale, d holding dL/dp on entry.
    @inline(__always)
    public static func softmaxBackward(_ p: UnsafePointer<Float>, _ d: UnsafeMutablePointer<Float>, scale: Float, count: Int) {
        if usesAVX512 { return dt_vm_softmax_backward(p, d, scale, count) }
        let rowDot = dot(p, d, count: count)
        for j in 0..<count { d[j] = p[j] * (d[j] - rowDot) * scale }
    }

    /// h[i] = silu(gate[i]) · up[i] in CVectorMath's AVX-512 loop (needs `usesAVX512`), on the calling thread.
    @inline(__always)
    static func swiGLUAVX512(gate: UnsafePointer<Float>, up: UnsafePointer<Float>, _ h: UnsafeMutablePointer<Float>, count: Int) {
        dt_vm_swiglu(gate, up, h, count)
    }

    /// SwiGLU's backward in CVectorMath's AVX-512 loop (needs `usesAVX512`), on the calling thread.
    @inline(__always)
    static func swiGLUBackwardAVX512(_ dh: UnsafePointer<Float>, gate: UnsafePointer<Float>, up: UnsafePointer<Float>,
                                     dgate: UnsafeMutablePointer<Float>, dup: UnsafeMutablePointer<Float>, count: Int) {
        dt_vm_swiglu_backward(dh, gate, up, dgate, dup, count)
    }
}
