// Autoregressive generation with a KV cache: prefill the prompt once, then one token per step.
// Sampling: greedy (temperature 0) or temperature → top-k → top-p with a seeded generator.
import DTKernels
import Foundation

public struct SamplingOptions: Sendable {
    public var temperature: Float = 0
    public var topK: Int = 0
    public var topP: Float = 1
    public var seed: UInt64 = 0
    public init(temperature: Float = 0, topK: Int = 0, topP: Float = 1, seed: UInt64 = 0) {
        self.temperature = temperature; self.topK = topK; self.topP = topP; self.seed = seed
    }
}

/// SplitMix64, so a seed gives the same samples on every platform.
public struct SplitMix64: RandomNumberGenerator {
    var state: UInt64
    public init(seed: UInt64) { state = seed }
    public mutating func next() -> UInt64 {
        state &+= 0x9E37_79B9_7F4A_7C15
        var z = state
        z = (z ^ (z >> 30)) &* 0xBF58_476D_1CE4_E5B9
        z = (z ^ (z >> 27)) &* 0x94D0_49BB_1331_11EB
        return z ^ (z >> 31)
    }
}

public struct Sampler {
    public let options: SamplingOptions
    var rng: SplitMix64
    var order: [Int32] = []
    var probs: [Float] = []

    public init(_ options: SamplingOptions) {
        self.options = options
        rng = SplitMix64(seed: options.seed)
    }

    public mutating func sample(_ logits: UnsafePointer<Float>, vocab: Int) -> Int32 {
        if options.temperature <= 0 {
            var best = 0
            for i in 1..<vocab where logits[i] > logits[best] { best = i }
            return Int32(best)
        }
        if order.count != vocab { order = (0..<Int32(vocab)).map { $0 }; probs = [Float](repeating: 0, count: vocab) }
        for i in 0..<vocab { order[i] = Int32(i) }
        order.sort { logits[Int($0)] > logits[Int($1)] }
        let k = options.topK > 0 ? min(options.topK, vocab) : vocab
        let maxLogit = logits[Int(order[0])]
        var total: Float = 0
        for i in 0..<k {
            probs[i] = expf((logits[Int(order[i])] - maxLogit) / options.temperature)
            total += probs[i]
        }
        var keep = k
        if options.topP < 1 {
            var cumulative: Float = 0
            for i in 0..<k {
                cumulative += probs[i] / total
                if cumulative >= options.topP { keep = i + 1; break }
            }
            total = probs[0..<keep].reduce(0, +)
        }
        var r = Float(Double(rng.next() >> 11) / Double(1 << 53)) * total
        for i in 0..<keep {
            r -= probs[i]
            if r <= 0 { return order[i] }
        }
        return order[keep - 1]
    }
}

public final class Generator {
    public let model: LlamaModel
    let cache: KVCache
    let workspace: ForwardWorkspace
    let logits: FloatBuffer
    public let capacity: Int

    /// Room for `capacity` tokens (prompt + generated); the prompt is prefilled in chunks of `chunk`.
    public let adapter: ModelAdapter?

    public init(model: LlamaModel, capacity: Int, chunk: Int = 128, adapter: ModelAdapter? = nil) {
        self.model = model
        self.adapter = adapter
        self.capacity = min(capacity + (adapter?.virtualTokens ?? 0), model.rope.maxPositions)
        let chunk = max(chunk, (adapter?.virtualTokens ?? 0) + 1)
        cache = KVCache(model: model, capacity: self.capacity)
        workspace = ForwardWorkspace(model: model, batch: 1, length: chunk, withLogits: false)
        logits = FloatBuffer(count: model.config.vocabSize)
    }

    /// Generates up to `maxTokens` after `prompt`, calling `onToken` for each; stops at a token in `stop`.
    /// Returns the generated ids.
    @discardableResult
    public func generate(prompt: [Int32], maxTokens: Int, sampling: SamplingOptions, stop: Set<Int32>,
                         onToken: (Int32) -> Void = { _ in }) -> [Int32] {
        precondition(!prompt.isEmpty)
        cache.length = 0
        var sampler = Sampler(sampling)
        // Virtual tokens (prompt tuning) take the first positions; the adapter writes their embeddings.
        let virtual = adapter?.virtualTokens ?? 0
        var pending = [Int32](repeating: 0, count: virtual) + Array(prompt.suffix(capacity - 1 - virtual))
        var out: [Int32] = []
        while out.count < maxTokens {
            var lastRows = 0
            while !pending.isEmpty {
                let n = min(workspace.length, pending.count)
                workspace.setShape(batch: 1, length: n)
                for i in 0..<n { workspace.tokens[i] = pending[i] }
                model.forwardLayers(workspace, cache: cache, adapter: adapter)
                pending.removeFirst(n)
                lastRows = n
            }
            model.computeLogits(workspace, firstRow: lastRows - 1, rows: 1, into: logits.pointer)
            let next = sampler.sample(logits.pointer, vocab: model.config.vocabSize)
            out.append(next)
            onToken(next)
            if stop.contains(next) || cache.length >= capacity { break }
            pending = [next]
        }
        return out
    }
}
