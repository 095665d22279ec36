// The one variation point of the model: a trainable adapter that hooks into the frozen forward and
// backward passes. LoRA hooks the projections; prompt tuning hooks the input embeddings; the linear probe
// reads the final hidden states. All hooks have no-op defaults.
import DTKernels

public protocol ModelAdapter: AnyObject {
    /// Whether projection `p` of `layer` has an adapter (skips work for the others).
    func adapts(layer: Int, _ p: TensorNames.Projection) -> Bool
    /// y (rows, out) += adapter(x (rows, in)), beside the frozen `weight` (whose product is already in y).
    /// Saves what its backward needs.
    func forward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                 y: UnsafeMutablePointer<Float>, rows: Int)
    /// Given dy (rows, out): accumulates the adapter's parameter gradients and adds its part of dx (rows, in).
    func backward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                  dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, rows: Int)
    /// Virtual tokens prepended to every sequence (prompt tuning); 0 otherwise.
    var virtualTokens: Int { get }
    /// Writes the virtual token embeddings (V, C) at the start of each sequence's rows in `stream` (B, T, C).
    func embedVirtualTokens(stream: UnsafeMutablePointer<Float>, batch: Int, length: Int)
    /// Receives the gradient of the input stream (B, T, C) (prompt tuning takes the first V rows of each sequence).
    func backwardEmbeddings(dstream: UnsafePointer<Float>, batch: Int, length: Int)
}

extension ModelAdapter {
    public func adapts(layer: Int, _ p: TensorNames.Projection) -> Bool { false }
    public func forward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                        y: UnsafeMutablePointer<Float>, rows: Int) {}
    public func backward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                         dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, rows: Int) {}
    public var virtualTokens: Int { 0 }
    public func embedVirtualTokens(stream: UnsafeMutablePointer<Float>, batch: Int, length: Int) {}
    public func backwardEmbeddings(dstream: UnsafePointer<Float>, batch: Int, length: Int) {}
}
