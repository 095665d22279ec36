// NF4 with double quantization, as bitsandbytes (functional.py; QLoRA, arXiv 2305.14314):
//   weights flattened row-major in blocks of 64; absmax per block; x / absmax → nearest of the 16 NF4 codes;
//   two codes per byte, element 2i in the HIGH nibble (the opposite of ggml's Q4_0).
//   Double quantization: offset = mean(absmax); (absmax − offset) quantized blockwise (256 per block) to 8 bits
//   with the signed dynamic map; nested absmax (fp32) per block of 256.
//   Dequantize: absmax_i = map[qabsmax_i] · nested[i / 256] + offset;  x = NF4[code] · absmax_i.
import Foundation

public enum NF4 {
    public static let codebook: [Float] = [
        -1.0, -0.6961928009986877, -0.5250730514526367, -0.39491748809814453, -0.28444138169288635,
        -0.18477343022823334, -0.09105003625154495, 0.0, 0.07958029955625534, 0.16093020141124725,
        0.24611230194568634, 0.33791524171829224, 0.44070982933044434, 0.5626170039176941,
        0.7229568362236023, 1.0,
    ]
    public static let blockSize = 64
    public static let nestedBlockSize = 256

    /// bitsandbytes' create_dynamic_map(signed=True, max_exponent_bits=7, total_bits=8): 256 sorted values.
    public static let dynamicMap: [Float] = {
        var data: [Float] = []
        let maxExponentBits = 7, nonSignBits = 7
        for i in 0..<maxExponentBits {
            let fractionItems = (1 << (i + nonSignBits - maxExponentBits)) + 1
            // torch.linspace(0.1, 1, fractionItems) in float32: a float step, each value start + step·k (or
            // end − step·(n−1−k) past halfway) rounded once; then midpoints.
            var boundaries = [Float](repeating: 0, count: fractionItems)
            let step = (Float(1) - Float(0.1)) / Float(fractionItems - 1)
            let half = fractionItems / 2
            for k in 0..<fractionItems {
                boundaries[k] = k < half ? Float(Double(Float(0.1)) + Double(step) * Double(k))
                    : Float(1 - Double(step) * Double(fractionItems - 1 - k))
            }
            let scale = Float(pow(10.0, Double(-(maxExponentBits - 1) + i)))
            for k in 0..<(fractionItems - 1) {
                let mean = (boundaries[k] + boundaries[k + 1]) / 2
                data.append(scale * mean)
                data.append(-scale * mean)
            }
        }
        data.append(0); data.append(1)
        return data.sorted()
    }()

    /// Index of the nearest entry of a sorted table (first of equals, as argmin).
    /// A binary search for the first entry above x, then the closer neighbour; walking left over equal distances
    /// gives argmin's first index also for ties and equal entries.
    @inline(__always) static func nearest(_ x: Float, _ table: [Float]) -> Int {
        guard !x.isNaN else { return 0 }   // every distance is NaN: argmin keeps the first
        var lo = 0, hi = table.count
        while lo < hi {
            let mid = (lo + hi) / 2
            if table[mid] <= x { lo = mid + 1 } else { hi = mid }
        }
        var best = lo == table.count || (lo > 0 && abs(x - table[lo - 1]) <= abs(x - table[lo])) ? lo - 1 : lo
        while best > 0 && abs(x - table[best - 1]) == abs(x - table[best]) { best -= 1 }
        return best
    }

    /// Decision boundaries between neighbouring codes; x goes to the first code whose upper boundary is ≥ x
    /// (torch.bucketize(x, midpoints, right=False), as bitsandbytes' CPU path: exact midpoints go down).
    static let midpoints: [Float] = (0..<15).map { (codebook[$0] + codebook[$0 + 1]) / 2 }

    @inline(__always) static func code(_ x: Float) -> Int {
        var i = 0
        while i < 15 && midpoints[i] < x { i += 1 }
        return i
    }

    public struct Tensor {
        public var count: Int
        public var codes: [UInt8]          // (count / 2) packed, high nibble first
        public var quantizedAbsmax: [UInt8] // (count / 64) 8-bit codes of absmax − offset
        public var nestedAbsmax: [Float]   // (⌈count / 64 / 256⌉)
        public var offset: Float
        public var bytes: Int { codes.count + quantizedAbsmax.count + nestedAbsmax.count * 4 + 4 }

        public init(count: Int, codes: [UInt8], quantizedAbsmax: [UInt8], nestedAbsmax: [Float], offset: Float) {
            self.count = count; self.codes = codes; self.quantizedAbsmax = quantizedAbsmax
            self.nestedAbsmax = nestedAbsmax; self.offset = offset
        }
    }

    /// Quantizes `values` (count a multiple of 64). `split(blocks, body)` may run body over parts of 0..<blocks
    /// concurrently (the model's loader passes its workers); the result does not depend on how it splits.
    public static func quantize(_ values: UnsafePointer<Float>, count: Int,
                                split: (Int, (Range<Int>) -> Void) -> Void = { $1(0..<$0) }) -> Tensor {
        precondition(count % blockSize == 0, "NF4 needs a multiple of \(blockSize) weights")
        let blocks = count / blockSize
        var absmax = [Float](repeating: 0, count: blocks)
        var codes = [UInt8](repeating: 0, count: count / 2)
        absmax.withUnsafeMutableBufferPointer { a in
            codes.withUnsafeMutableBufferPointer { c in
                let (a, c) = (a.baseAddress!, c.baseAddress!)
                split(blocks) { range in
                    let first = values + range.lowerBound * blockSize
                    blockAbsmax(first, blocks: range.count, into: a + range.lowerBound)
                    encode(first, blocks: range.count, absmax: a + range.lowerBound, into: c + range.lowerBound * blockSize / 2)
                }
            }
        }
        let scales = doubleQuantize(absmax)
        return Tensor(count: count, codes: codes, quantizedAbsmax: scales.quantized, nestedAbsmax: scales.nested, offset: scales.offset)
    }

    /// The absmax of each of `blocks` blocks of 64 values.
    public static func blockAbsmax(_ values: UnsafePointer<Float>, blocks: Int, into absmax: UnsafeMutablePointer<Float>) {
        for b in 0..<blocks {
            var m: Float = 0
            for j in 0..<blockSize { m = max(m, abs(values[b * blockSize + j])) }
            absmax[b] = m
        }
    }

    /// The packed NF4 codes (blocks · 32 bytes) of `blocks` blocks of 64 values with their absmax.
    public static func encode(_ values: UnsafePointer<Float>, blocks: Int, absmax: UnsafePointer<Float>,
                              into codes: UnsafeMutablePointer<UInt8>) {
        for b in 0..<blocks {
            let m = absmax[b]
            let inverse = m > 0 ? 1 / m : 0   // bitsandbytes scales by the reciprocal, then clamps to [-1, 1]
            for j in stride(from: 0, to: blockSize, by: 2) {
                let hi = code(min(max(values[b * blockSize + j] * inverse, -1), 1))
                let lo = code(min(max(values[b * blockSize + j + 1] * inverse, -1), 1))
                codes[(b * blockSize + j) / 2] = UInt8(hi << 4 | lo)
            }
        }
    }

    /// Double quantization of a whole tensor's block absmax values: offset = their mean, then (absmax − offset)
    /// to 8-bit codes of the signed dynamic map, one fp32 scale per 256 blocks.
    public static func doubleQuantize(_ absmax: [Float]) -> (quantized: [UInt8], nested: [Float], offset: Float) {
        let blocks = absmax.count
        var sum = 0.0
        for a in absmax { sum += Double(a) }
        let offset = Float(sum / Double(blocks))
        let nestedBlocks = (blocks + nestedBlockSize - 1) / nestedBlockSize
        var nested = [Float](repeating: 0, count: nestedBlocks)
        var q = [UInt8](repeating: 0, count: blocks)
        for nb in 0..<nestedBlocks {
            let range = (nb * nestedBlockSize)..<min((nb + 1) * nestedBlockSize, blocks)
            var m: Float = 0
            for i in range { m = max(m, abs(absmax[i] - offset)) }
            nested[nb] = m
            for i in range { q[i] = UInt8(nearest((absmax[i] - offset) / (m > 0 ? m : 1), dynamicMap)) }
        }
        return (q, nested, offset)
    }

    /// The fp32 block scales (count / 64) recovered from the double quantization.
    public static func absmax(_ t: Tensor) -> [Float] {
        t.quantizedAbsmax.enumerated().map { i, q in dynamicMap[Int(q)] * t.nestedAbsmax[i / nestedBlockSize] + t.offset }
    }

    /// Dequantizes elements [start, start + count) (block-aligned) into `out`; block scales are recovered
    /// from the double quantization on the fly, so no fp32 absmax array is kept.
    public static func dequantize(_ t: Tensor, start: Int = 0, count: Int? = nil, into out: UnsafeMutablePointer<Float>) {
        t.codes.withUnsafeBufferPointer { dequantize(t, codes: $0.baseAddress!, start: start, count: count, into: out) }
    }

    /// The fp32 absmax of blocks `blocks`, recovered from the double quantization exactly as `dequantize` does.
    public static func blockScales(_ t: Tensor, blocks: Range<Int>, into out: UnsafeMutablePointer<Float>) {
        t.quantizedAbsmax.withUnsafeBufferPointer { q in
            t.nestedAbsmax.withUnsafeBufferPointer { nested in
                dynamicMap.withUnsafeBufferPointer { map in
                    for (i, block) in blocks.enumerated() {
                        out[i] = map[Int(q[block])] * nested[block / nestedBlockSize] + t.offset
                    }
                }
            }
        }
    }

    /// As above with the packed codes taken from `codes` (e.g. gathered from the ranks that hold them).
    public static func dequantize(_ t: Tensor, codes: UnsafePointer<UInt8>, start: Int = 0, count: Int? = nil,
                                  into out: UnsafeMutablePointer<Float>) {
        let n = count ?? t.count
        precondition(start % blockSize == 0 && n % blockSize == 0)
        do {
            t.quantizedAbsmax.withUnsafeBufferPointer { q in
                t.nestedAbsmax.withUnsafeBufferPointer { nested in
                    dynamicMap.withUnsafeBufferPointer { map in
                        codebook.withUnsafeBufferPointer { book in
                            for block in stride(from: start / blockSize, to: (start + n) / blockSize, by: 1) {
                                let s = map[Int(q[block])] * nested[block / nestedBlockSize] + t.offset
                                let o = out + (block * blockSize - start)
                                let c = codes + block * blockSize / 2
                                for i in 0..<(blockSize / 2) {
                                    o[2 * i] = book[Int(c[i] >> 4)] * s
                                    o[2 * i + 1] = book[Int(c[i] & 15)] * s
                                }
                            }
                        }
                    }
                }
            }
        }
    }
}
