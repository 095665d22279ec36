// All trainable tensors (adapter, prompt, probe) in one allocation with their gradients and AdamW moments,
// so the optimizer is one loop and the gradient all-reduce is one call.
import DTKernels

public final class ParameterArena {
    public struct Entry: Equatable {
        public var name: String
        public var shape: [Int]
        public var offset: Int
        public var count: Int { shape.reduce(1, *) }
    }

    public let entries: [Entry]
    public let count: Int
    /// Parameters, gradients and Adam moments, each (count); `fused` = gradients + 3 trailing scalars
    /// (loss sum, target-token count, ranks that received a stop signal) so one all-reduce carries everything.
    public let values: FloatBuffer
    public let fused: FloatBuffer
    public let firstMoment: FloatBuffer
    public let secondMoment: FloatBuffer
    private let index: [String: Int]
    /// Bumped whenever the values change as a whole (an optimizer step, `set`, a resume): what an adapter caches
    /// from its parameters (DoRA's row norms) is recomputed when this moves.
    public private(set) var version: UInt64 = 0
    public func valuesChanged() { version &+= 1 }

    public init(_ specs: [(name: String, shape: [Int])]) {
        var entries: [Entry] = []
        var offset = 0
        for s in specs {
            entries.append(Entry(name: s.name, shape: s.shape, offset: offset))
            offset += s.shape.reduce(1, *)
        }
        self.entries = entries
        count = offset
        values = FloatBuffer(count: offset)
        fused = FloatBuffer(count: offset + 3)
        firstMoment = FloatBuffer(count: offset)
        secondMoment = FloatBuffer(count: offset)
        index = Dictionary(uniqueKeysWithValues: entries.enumerated().map { ($1.name, $0) })
    }

    public var gradients: UnsafeMutablePointer<Float> { fused.pointer }
    public func entry(_ name: String) -> Entry? { index[name].map { entries[$0] } }
    public func value(_ e: Entry) -> UnsafeMutablePointer<Float> { values.pointer + e.offset }
    public func gradient(_ e: Entry) -> UnsafeMutablePointer<Float> { fused.pointer + e.offset }
    public func zeroGradients() { fused.zero() }

    /// Copy of one tensor's values.
    public func array(_ name: String) -> [Float] {
        guard let e = entry(name) else { return [] }
        return Array(UnsafeBufferPointer(start: value(e), count: e.count))
    }

    public func set(_ name: String, _ values: [Float]) {
        guard let e = entry(name) else { preconditionFailure("no trainable tensor \(name)") }
        precondition(values.count == e.count)
        value(e).update(from: values, count: e.count)
        valuesChanged()
    }

    public var bytes: Int { (values.count + fused.count + firstMoment.count + secondMoment.count) * 4 }
}
