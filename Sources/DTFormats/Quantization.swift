// ggml tensor types and their scalar reference dequantizers (layouts from ggml-common.h / ggml-quants.c).
//
//   Q4_0  32 w, 18 B: f16 d; u8 qs[16]                 y[j] = ((qs[j]&15)-8)·d, y[j+16] = ((qs[j]>>4)-8)·d
//   Q4_1  32 w, 20 B: f16 d; f16 m; u8 qs[16]          y[j] = (qs[j]&15)·d + m, y[j+16] = (qs[j]>>4)·d + m
//   Q8_0  32 w, 34 B: f16 d; i8 qs[32]                 y[j] = qs[j]·d
//   Q4_K 256 w, 144 B: f16 d; f16 dmin; u8 scales[12]; u8 qs[128]          (8 sub-blocks, 6-bit scale/min)
//   Q5_K 256 w, 176 B: f16 d; f16 dmin; u8 scales[12]; u8 qh[32]; u8 qs[128]
//   Q6_K 256 w, 210 B: u8 ql[128]; u8 qh[64]; i8 scales[16]; f16 d
// Operation order follows the reference so results are bit-identical to the gguf Python package.

public enum GGMLType: UInt32, CaseIterable, Sendable {
    case f32 = 0, f16 = 1, q4_0 = 2, q4_1 = 3, q5_0 = 6, q5_1 = 7, q8_0 = 8, q8_1 = 9
    case q2_K = 10, q3_K = 11, q4_K = 12, q5_K = 13, q6_K = 14, q8_K = 15, bf16 = 30

    public var name: String {
        switch self {
        case .f32: "F32"; case .f16: "F16"; case .bf16: "BF16"; case .q4_0: "Q4_0"; case .q4_1: "Q4_1"
        case .q5_0: "Q5_0"; case .q5_1: "Q5_1"; case .q8_0: "Q8_0"; case .q8_1: "Q8_1"; case .q2_K: "Q2_K"
        case .q3_K: "Q3_K"; case .q4_K: "Q4_K"; case .q5_K: "Q5_K"; case .q6_K: "Q6_K"; case .q8_K: "Q8_K"
        }
    }

    /// Weights per block.
    public var blockSize: Int {
        switch self {
        case .f32, .f16, .bf16: 1
        case .q4_0, .q4_1, .q5_0, .q5_1, .q8_0, .q8_1: 32
        case .q2_K, .q3_K, .q4_K, .q5_K, .q6_K, .q8_K: 256
        }
    }

    /// Bytes per block.
    public var blockBytes: Int {
        switch self {
        case .f32: 4; case .f16, .bf16: 2
        case .q4_0: 18; case .q4_1: 20; case .q5_0: 22; case .q5_1: 24; case .q8_0: 34; case .q8_1: 36
        case .q2_K: 84; case .q3_K: 110; case .q4_K: 144; case .q5_K: 176; case .q6_K: 210; case .q8_K: 292
        }
    }

    /// Whether dtrain can turn this type into fp32.
    public var canDequantize: Bool {
        switch self {
        case .f32, .f16, .bf16, .q4_0, .q4_1, .q8_0, .q4_K, .q5_K, .q6_K: true
        default: false
        }
    }

    /// Bytes for `count` elements, or nil when `count` is not a whole number of blocks or overflows.
    public func byteCount(elements count: Int) -> Int? {
        guard count >= 0, count % blockSize == 0 else { return nil }
        let (bytes, overflow) = (count / blockSize).multipliedReportingOverflow(by: blockBytes)
        return overflow ? nil : bytes
    }
}

@inline(__always) func f16(_ p: UnsafeRawPointer, _ offset: Int) -> Float {
    Float(Float16(bitPattern: p.loadUnaligned(fromByteOffset: offset, as: UInt16.self)))
}

@inline(__always) func scaleMinK4(_ j: Int, _ q: UnsafePointer<UInt8>) -> (Float, Float) {
    if j < 4 {
        return (Float(q[j] & 63), Float(q[j + 4] & 63))
    }
    let d = (q[j + 4] & 0xF) | ((q[j - 4] >> 6) << 4)
    let m = (q[j + 4] >> 4) | ((q[j] >> 6) << 4)
    return (Float(d), Float(m))
}

public enum Dequantize {
    /// Dequantizes `count` consecutive elements of `type` starting at `src` into `dst`.
    /// Precondition: `type.canDequantize` and `count` is a multiple of the block size.
    public static func run(_ type: GGMLType, _ src: UnsafeRawPointer, _ dst: UnsafeMutablePointer<Float>, count: Int) {
        precondition(type.canDequantize && count % type.blockSize == 0, "dequantize \(type.name) of \(count)")
        let blocks = count / type.blockSize
        let (blockBytes, blockWeights) = (type.blockBytes, type.blockSize)   // the table above: no literal sizes below
        switch type {
        case .f32:
            UnsafeMutableRawPointer(dst).copyMemory(from: src, byteCount: count * 4)
        case .f16:
            for i in 0..<count { dst[i] = f16(src, 2 * i) }
        case .bf16:
            for i in 0..<count {
                dst[i] = Float(bitPattern: UInt32(src.loadUnaligned(fromByteOffset: 2 * i, as: UInt16.self)) << 16)
            }
        case .q4_0:
            for b in 0..<blocks {
                let block = src + b * blockBytes, y = dst + b * blockWeights
                let d = f16(block, 0)
                let qs = (block + 2).assumingMemoryBound(to: UInt8.self)
                for j in 0..<16 {
                    y[j] = Float(Int(qs[j] & 15) - 8) * d
                    y[j + 16] = Float(Int(qs[j] >> 4) - 8) * d
                }
            }
        case .q4_1:
            for b in 0..<blocks {
                let block = src + b * blockBytes, y = dst + b * blockWeights
                let d = f16(block, 0), m = f16(block, 2)
                let qs = (block + 4).assumingMemoryBound(to: UInt8.self)
                for j in 0..<16 {
                    y[j] = Float(qs[j] & 15) * d + m
                    y[j + 16] = Float(qs[j] >> 4) * d + m
                }
            }
        case .q8_0:
            for b in 0..<blocks {
                let block = src + b * blockBytes, y = dst + b * blockWeights
                let d = f16(block, 0)
                let qs = (block + 2).assumingMemoryBound(to: Int8.self)
                for j in 0..<32 { y[j] = Float(qs[j]) * d }
            }
        case .q4_K:
            for b in 0..<blocks {
                let block = src + b * blockBytes
                var y = dst + b * blockWeights
                let d = f16(block, 0), dmin = f16(block, 2)
                let scales = (block + 4).assumingMemoryBound(to: UInt8.self)
                var q = (block + 16).assumingMemoryBound(to: UInt8.self)
                for pair in 0..<4 {
                    let (sc1, m1) = scaleMinK4(2 * pair, scales), (sc2, m2) = scaleMinK4(2 * pair + 1, scales)
                    let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
                    for l in 0..<32 { y[l] = d1 * Float(q[l] & 0xF) - min1 }
                    for l in 0..<32 { y[32 + l] = d2 * Float(q[l] >> 4) - min2 }
                    y += 64; q += 32
                }
            }
        case .q5_K:
            for b in 0..<blocks {
                let block = src + b * blockBytes
                var y = dst + b * blockWeights
                let d = f16(block, 0), dmin = f16(block, 2)
                let scales = (block + 4).assumingMemoryBound(to: UInt8.self)
                let qh = (block + 16).assumingMemoryBound(to: UInt8.self)
                var ql = (block + 48).assumingMemoryBound(to: UInt8.self)
                var u1: UInt8 = 1, u2: UInt8 = 2
                for pair in 0..<4 {
                    let (sc1, m1) = scaleMinK4(2 * pair, scales), (sc2, m2) = scaleMinK4(2 * pair + 1, scales)
                    let d1 = d * sc1, min1 = dmin * m1, d2 = d * sc2, min2 = dmin * m2
                    for l in 0..<32 { y[l] = d1 * Float((ql[l] & 0xF) + (qh[l] & u1 != 0 ? 16 : 0)) - min1 }
                    for l in 0..<32 { y[32 + l] = d2 * Float((ql[l] >> 4) + (qh[l] & u2 != 0 ? 16 : 0)) - min2 }
                    y += 64; ql += 32; u1 <<= 2; u2 <<= 2
                }
            }
        case .q6_K:
            for b in 0..<blocks {
                let block = src + b * blockBytes
                var y = dst + b * blockWeights
                var ql = block.assumingMemoryBound(to: UInt8.self)
                var qh = (block + 128).assumingMemoryBound(to: UInt8.self)
                var sc = (block + 192).assumingMemoryBound(to: Int8.self)
                let d = f16(block, 208)
                for _ in 0..<2 {
                    for l in 0..<32 {
                        let s = l / 16
                        let q1 = Int(Int8(bitPattern: (ql[l] & 0xF) | ((qh[l] & 3) << 4))) - 32
                        let q2 = Int(Int8(bitPattern: (ql[l + 32] & 0xF) | (((qh[l] >> 2) & 3) << 4))) - 32
                        let q3 = Int(Int8(bitPattern: (ql[l] >> 4) | (((qh[l] >> 4) & 3) << 4))) - 32
                        let q4 = Int(Int8(bitPattern: (ql[l + 32] >> 4) | (((qh[l] >> 6) & 3) << 4))) - 32
                        y[l] = d * Float(sc[s]) * Float(q1)
                        y[l + 32] = d * Float(sc[s + 2]) * Float(q2)
                        y[l + 64] = d * Float(sc[s + 4]) * Float(q3)
                        y[l + 96] = d * Float(sc[s + 6]) * Float(q4)
                    }
                    y += 128; ql += 64; qh += 32; sc += 8
                }
            }
        default:
            preconditionFailure("unreachable: \(type.name) cannot be dequantized")
        }
    }
}
