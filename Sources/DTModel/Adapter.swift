// The one variation point of the model: a trainable adapter that hooks into the frozen forward and
// backward passes. LoRA hooks the projections; DoRA also scales their frozen output per feature; prompt tuning
// hooks the input embeddings; the linear probe reads the final hidden states. All hooks have no-op defaults.
import DTKernels

/// A factor per output feature on a projection's frozen product (DoRA: m / ‖W + s·B·A‖ per row of W), with
/// the adapter's buffers the choke point leaves its intermediate results in.
public struct FrozenOutputScale {
    public var scale: UnsafePointer<Float>                  // (out)
    public var product: UnsafeMutablePointer<Float>         // (rows, out) forward: x · Wᵀ + adapter(x), before scaling
    public var scaledGradient: UnsafeMutablePointer<Float>  // (rows, out) backward: scale ⊙ dy
    public init(scale: UnsafePointer<Float>, product: UnsafeMutablePointer<Float>, scaledGradient: UnsafeMutablePointer<Float>) {
        self.scale = scale; self.product = product; self.scaledGradient = scaledGradient
    }
}

public protocol ModelAdapter: AnyObject {
    /// Makes room for passes over `workspace` (its capacity in rows, and whether it keeps every layer's
    /// activations for backward). The model calls it at the start of each pass, so the workspace's owner sizes
    /// the adapter's row scratch: allocated on the first call, grown only for a larger workspace, else a no-op.
    func reserve(for workspace: ForwardWorkspace)
    /// Whether projection `p` of `layer` has an adapter (skips work for the others).
    func adapts(layer: Int, _ p: TensorNames.Projection) -> Bool
    /// Asked before each product of an adapted projection: nil (the default) leaves y = x · Wᵀ and dx = dy · W.
    /// A scale makes `project` write x · Wᵀ into `product`, hand `product` to the adapter's `forward` as its y, and
    /// then put scale ⊙ product into y (added when y holds the residual stream); `projectBackward` takes
    /// dx = (scale ⊙ dy) · W, leaving scale ⊙ dy in `scaledGradient` for the adapter's `backward`.
    /// `scratch` is the products' scratch, for an adapter that multiplies by `weight` itself (through
    /// `scratch.sharingWeights`, so the rounded input the next projection reuses stays intact).
    func frozenOutputScale(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, rows: Int,
                           scratch: ProductScratch) -> FrozenOutputScale?
    /// y (rows, out) += adapter(x (rows, in)), beside the frozen `weight` (whose product is already in y).
    /// Saves what its backward needs.
    func forward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                 y: UnsafeMutablePointer<Float>, rows: Int)
    /// Given dy (rows, out): accumulates the adapter's parameter gradients and adds its part of dx (rows, in).
    func backward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                  dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, rows: Int)
    /// Virtual tokens prepended to every sequence (prompt tuning); 0 otherwise.
    var virtualTokens: Int { get }
    /// Writes the virtual token embeddings (virtual tokens, C) at the start of each sequence's rows in `stream` (B, T, C).
    func embedVirtualTokens(stream: UnsafeMutablePointer<Float>, batch: Int, length: Int)
    /// Receives the gradient of the input stream (B, T, C) (prompt tuning takes the first virtual-token rows of each sequence).
    func backwardEmbeddings(dstream: UnsafePointer<Float>, batch: Int, length: Int)
}

extension ModelAdapter {
    public func reserve(for workspace: ForwardWorkspace) {}
    public func adapts(layer: Int, _ p: TensorNames.Projection) -> Bool { false }
    public func frozenOutputScale(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, rows: Int,
                                  scratch: ProductScratch) -> FrozenOutputScale? { nil }
    public func forward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                        y: UnsafeMutablePointer<Float>, rows: Int) {}
    public func backward(layer: Int, _ p: TensorNames.Projection, weight: FrozenMatrix, x: UnsafePointer<Float>,
                         dy: UnsafePointer<Float>, dx: UnsafeMutablePointer<Float>, rows: Int) {}
    public var virtualTokens: Int { 0 }
    public func embedVirtualTokens(stream: UnsafeMutablePointer<Float>, batch: Int, length: Int) {}
    public func backwardEmbeddings(dstream: UnsafePointer<Float>, batch: Int, length: Int) {}
}
