// Encoders from fp32 into ggml types: the inverse of Dequantize.run (Quantization.swift). The output is
// bit-identical to the gguf package's numpy reference (gguf/quants.py `quantize`), whose fp32 operation order
// is kept here. numpy stays in float32 throughout: its Python-scalar operands (127, -8, 15, 1) are weak.
//
//   type   encode (per block of 32, x = the block)                                  decode (Dequantize)
//   F16    numpy astype(float16): nearest even; a NaN keeps sign and top payload    y = half(h)
//   BF16   NaN: (bits & 0xffff0000) | 0x400000; else (bits + 0x7fff + lsb) >> 16   y = bits << 16
//   Q8_0   d = max|x| / 127;  id = d == 0 ? 0 : 1/d;  q = round-half-away(x·id)      y = q·d
//   Q4_0   m = x[first argmax |x|];  d = m / -8;  q = min(15, trunc(x·id + 8.5))   y = (q − 8)·d
//   Q4_1   d = (max − min) / 15;  q = min(15, trunc((x − min)·id + 0.5))            y = q·d + min
// d and min are stored as f16 (the F16 rule above). Q4 nibbles: element j low, j + 16 high.
//
// Degenerate blocks follow the reference as well: a NaN propagates through max/min (argmax takes the first
// NaN); a float that does not fit the integer (NaN, ±inf when 1/d overflows on a subnormal block) casts to 0,
// as numpy's cast does on x86-64. One difference is left: for a Q4_1 block whose minimum is a zero and that
// holds both +0 and −0, the sign of the stored min depends on numpy's SIMD reduction order (here: the first).
// The decoded values are the same either way.

public enum Quantize {
    /// Whether `run` can encode into `t`.
    public static func canEncode(_ t: GGMLType) -> Bool {
        switch t {
        case .f32, .f16, .bf16, .q8_0, .q4_0, .q4_1: true
        default: false
        }
    }

    /// Encodes `count` consecutive fp32 values from `src` as `type` into `dst`, which must hold
    /// `type.byteCount(elements: count)` bytes (no alignment needed).
    /// Precondition: `canEncode(type)` and `count` is a multiple of the block size.
    public static func run(_ type: GGMLType, _ src: UnsafePointer<Float>, _ dst: UnsafeMutableRawPointer, count: Int) {
        precondition(canEncode(type) && count >= 0 && count % type.blockSize == 0, "quantize \(type.name) of \(count)")
        let blocks = count / type.blockSize
        let (blockBytes, blockWeights) = (type.blockBytes, type.blockSize)   // sizes from GGMLType's table
        switch type {
        case .f32:
            dst.copyMemory(from: src, byteCount: count * 4)
        case .f16:
            for i in 0..<count { store16(f16(src[i]), dst, 2 * i) }
        case .bf16:
            for i in 0..<count { store16(bf16(src[i]), dst, 2 * i) }
        case .q8_0:
            for b in 0..<blocks { q8_0(src + blockWeights * b, dst + blockBytes * b) }
        case .q4_0:
            for b in 0..<blocks { q4_0(src + blockWeights * b, dst + blockBytes * b) }
        case .q4_1:
            for b in 0..<blocks { q4_1(src + blockWeights * b, dst + blockBytes * b) }
        default:
            preconditionFailure("unreachable: \(type.name) cannot be encoded")
        }
    }

    /// fp32 → IEEE half bits as numpy's float32 → float16 cast: round to nearest even, overflow to ±inf,
    /// subnormals kept; a NaN keeps its sign and the top 10 payload bits (not quieted; made non-zero).
    public static func f16(_ x: Float) -> UInt16 {
        guard x.isNaN else { return Float16(x).bitPattern }
        let bits = x.bitPattern
        let h = UInt16(truncatingIfNeeded: 0x7C00 + ((bits & 0x7F_FFFF) >> 13))
        return UInt16(truncatingIfNeeded: (bits >> 16) & 0x8000) | (h == 0x7C00 ? 0x7C01 : h)
    }

    /// fp32 → bfloat16 bits as gguf (and ggml_compute_fp32_to_bf16): round to nearest even (large values
    /// round to ±inf, subnormals are kept); a NaN is truncated and quieted.
    public static func bf16(_ x: Float) -> UInt16 {
        let bits = x.bitPattern
        if bits & 0x7FFF_FFFF > 0x7F80_0000 {
            return UInt16(truncatingIfNeeded: ((bits & 0xFFFF_0000) | 0x40_0000) >> 16)
        }
        return UInt16(truncatingIfNeeded: (UInt64(bits) + UInt64(0x7FFF + ((bits >> 16) & 1))) >> 16)
    }

    // MARK: blocks (x: 32 floats)

    /// Q8_0: 34 bytes, f16 d; i8 qs[32].
    static func q8_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        var amax: Float = 0
        for j in 0..<32 {
            let a = abs(x[j])
            if !amax.isNaN && (a.isNaN || a > amax) { amax = a }
        }
        let d = amax / 127
        let id: Float = d == 0 ? 0 : 1 / d
        store16(f16(d), out, 0)
        for j in 0..<32 {
            out.storeBytes(of: castToByte((x[j] * id).rounded(.toNearestOrAwayFromZero)), toByteOffset: 2 + j, as: UInt8.self)
        }
    }

    /// Q4_0: 18 bytes, f16 d; u8 qs[16].
    static func q4_0(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        // numpy argmax: the first maximum, a NaN counting as the maximum.
        var imax = 0
        var mp = abs(x[0])
        if !mp.isNaN {
            for j in 1..<32 {
                let a = abs(x[j])
                if !(a <= mp) {
                    mp = a; imax = j
                    if a.isNaN { break }
                }
            }
        }
        let d = x[imax] / -8
        let id: Float = d == 0 ? 0 : 1 / d
        store16(f16(d), out, 0)
        for j in 0..<16 {
            let lo = min(15, castToByte(x[j] * id + 8.5))        // the cast truncates (np.trunc)
            let hi = min(15, castToByte(x[j + 16] * id + 8.5))
            out.storeBytes(of: lo | hi << 4, toByteOffset: 2 + j, as: UInt8.self)
        }
    }

    /// Q4_1: 20 bytes, f16 d; f16 min; u8 qs[16].
    static func q4_1(_ x: UnsafePointer<Float>, _ out: UnsafeMutableRawPointer) {
        var lo = x[0], hi = x[0]
        for j in 1..<32 {
            let v = x[j]
            if !lo.isNaN && (v.isNaN || v < lo) { lo = v }
            if !hi.isNaN && (v.isNaN || v > hi) { hi = v }
        }
        let d = (hi - lo) / 15
        let id: Float = d == 0 ? 0 : 1 / d
        store16(f16(d), out, 0)
        store16(f16(lo), out, 2)
        for j in 0..<16 {
            let q0 = min(15, castToByte((x[j] - lo) * id + 0.5))
            let q1 = min(15, castToByte((x[j + 16] - lo) * id + 0.5))
            out.storeBytes(of: q0 | q1 << 4, toByteOffset: 4 + j, as: UInt8.self)
        }
    }

    @inline(__always) static func store16(_ v: UInt16, _ p: UnsafeMutableRawPointer, _ offset: Int) {
        p.storeBytes(of: v.littleEndian, toByteOffset: offset, as: UInt16.self)
    }

    /// numpy's float32 → int8/uint8 cast on x86-64: truncation through a 32-bit integer, whose value for NaN
    /// and out-of-range floats (0x80000000) leaves a low byte of 0.
    @inline(__always) static func castToByte(_ x: Float) -> UInt8 {
        x > -2_147_483_904 && x < 2_147_483_648 ? UInt8(truncatingIfNeeded: Int32(x)) : 0
    }
}
