// The backward pass: the forward in reverse, layer by layer. Gradients flow only into the adapter's
// trainable tensors (and through the activations to reach them); frozen weights never get gradients —
// their products are used only to carry dL/dx.
import DTKernels
import Foundation

extension LlamaModel {
    /// dx (rows, in) = dy (rows, out) · W (+ dx when `accumulate`), plus the adapter's backward (which also
    /// takes its gradients). With the adapter's frozen-output scale (DoRA): dx = (scale ⊙ dy) · W.
    @inline(__always)
    func projectBackward(_ layer: Int, _ p: TensorNames.Projection, x: UnsafePointer<Float>, dy: UnsafePointer<Float>,
                         dx: UnsafeMutablePointer<Float>, rows: Int, accumulate: Bool, ws: ForwardWorkspace, adapter: ModelAdapter?) {
        let w = layers[layer].projections[p]!
        let adapted = adapter?.adapts(layer: layer, p) == true
        let scale = adapted ? adapter!.frozenOutputScale(layer: layer, p, weight: w, rows: rows, scratch: ws.productScratch) : nil
        if let scale {
            Profile.measure("backward adapter") {
                Vector.scaleColumns(dy, by: scale.scale, rows: rows, cols: w.rows, into: scale.scaledGradient, accumulate: false)
            }
        }
        Profile.measure("backward \(p)") {
            w.backward(scale.map { UnsafePointer($0.scaledGradient) } ?? dy, rows: rows, into: dx, accumulate: accumulate, scratch: ws.productScratch)
        }
        if adapted { Profile.measure("backward adapter") { adapter!.backward(layer: layer, p, weight: w, x: x, dy: dy, dx: dx, rows: rows) } }
    }

    /// Cross-entropy over rows whose label is ≥ 0, as a sum (not a mean): returns Σ −log p(label), and
    /// replaces logits (N, V) by dL/dlogits scaled by `gradScale` (1 / global target count). With the model's
    /// final-logit soft-cap (Architecture.finalLogitSoftcap, applied by the forward) the logits are the capped ones
    /// and the gradient is carried back through the cap to the LM head's output.
    public func crossEntropy(logits: UnsafeMutablePointer<Float>, labels: UnsafePointer<Int32>, rows: Int, gradScale: Float) -> Double {
        let vocab = config.vocabSize, softcap = config.architecture.finalLogitSoftcap
        var partial = [Double](repeating: 0, count: max(1, Parallel.workers))
        let keepsCapped = softcap != nil && gradScale != 0
        partial.withUnsafeMutableBufferPointer { sums in
            Parallel.ranges(rows, minimumPerWorker: 8) { worker, range in
                withUnsafeTemporaryAllocation(of: Float.self, capacity: keepsCapped ? vocab : 1) { cappedRow in   // (V)
                    var total = 0.0
                    for r in range {
                        let row = logits + r * vocab
                        let label = Int(labels[r])
                        guard label >= 0 else {
                            row.update(repeating: 0, count: vocab)
                            continue
                        }
                        if keepsCapped { cappedRow.baseAddress!.update(from: row, count: vocab) }
                        let target = Double(row[label])
                        total += Softmax.softmaxInPlace(row, count: vocab, factor: gradScale) - target
                        row[label] -= gradScale
                        if keepsCapped, let cap = softcap { SoftCap.backward(row, capped: cappedRow.baseAddress!, count: vocab, cap: cap) }
                    }
                    sums[worker] = total
                }
            }
        }
        return partial.reduce(0, +)
    }

    /// Backward from dL/dlogits (in ws.logits) to the adapter's gradients.
    public func backward(_ ws: ForwardWorkspace, adapter: ModelAdapter?) {
        let g = ws.gradients!
        let c = config
        let (N, C) = (ws.rows, c.hiddenSize)
        // LM head: dnorm (N, C) = dlogits (N, V) · W_head (V, C), or for selected rows only (zero elsewhere);
        // then the final RMSNorm.
        Profile.measure("backward lm head") {
            let head = lmHead ?? embedding
            if let targets = ws.targetCount {
                head.backward(ws.logits.pointer, rows: targets, dx: ws.targetNorm.pointer, scratch: ws.productScratch)
                g.norm.zero()
                for i in 0..<targets {
                    (g.norm.pointer + Int(ws.targetRows[i]) * C).update(from: ws.targetNorm.pointer + i * C, count: C)
                }
            } else {
                head.backward(ws.logits.pointer, rows: N, dx: g.norm.pointer, scratch: ws.productScratch)
            }
        }
        g.stream.zero()
        let lastInput = ws.stream.pointer  // the residual stream after the last layer (input of the final norm)
        RMSNorm.backward(g.norm.pointer, lastInput, finalNorm, rstd: ws.finalRstd.pointer, g.stream.pointer, rows: N, channels: C)
        for l in stride(from: c.layers - 1, through: 0, by: -1) {
            let a = ws.activations(l)
            if case .training(recompute: true) = ws.mode {
                ws.stream.pointer.update(from: ws.layerInputs[l].pointer, count: N * C)
                forwardLayer(l, ws, a, x: ws.stream.pointer, cache: nil, adapter: adapter)
            }
            backwardLayer(l, ws, a, adapter: adapter)
        }
        adapter?.backwardEmbeddings(dstream: g.stream.pointer, batch: ws.batch, length: ws.length)
    }

    /// One layer in reverse. On entry g.stream holds dL/d(layer output); on exit dL/d(layer input).
    func backwardLayer(_ l: Int, _ ws: ForwardWorkspace, _ a: LayerActivations, adapter: ModelAdapter?) {
        let g = ws.gradients!
        let c = config, w = layers[l]
        let (N, C, I) = (ws.rows, c.hiddenSize, c.intermediateSize)
        let dx = g.stream.pointer
        // MLP: out = middle + [postNorm](down(act(gate(n2)) · up(n2))),  n2 = RMSNorm(middle)
        let dDown = outputBackward(dx, norm: w.postMLPNorm, out: a.mlpOut, rstd: a.rstdPostMLP, g, rows: N)
        projectBackward(l, .down, x: a.hidden.pointer, dy: dDown, dx: g.hidden.pointer, rows: N, accumulate: false, ws: ws, adapter: adapter)
        Profile.measure("backward swiglu") {
            switch c.architecture.activation {
            case .swiGLU:
                SwiGLU.backward(g.hidden.pointer, gate: a.gate.pointer, up: a.up.pointer, dgate: g.gate.pointer, dup: g.up.pointer, count: N * I)
            case .geGLUTanh:
                GeGLU.backward(g.hidden.pointer, gate: a.gate.pointer, up: a.up.pointer, dgate: g.gate.pointer, dup: g.up.pointer, count: N * I)
            }
        }
        projectBackward(l, .gate, x: a.norm2.pointer, dy: g.gate.pointer, dx: g.norm.pointer, rows: N, accumulate: false, ws: ws, adapter: adapter)
        projectBackward(l, .up, x: a.norm2.pointer, dy: g.up.pointer, dx: g.norm.pointer, rows: N, accumulate: true, ws: ws, adapter: adapter)
        Profile.measure("backward norm") {
            RMSNorm.backward(g.norm.pointer, a.middle.pointer, w.mlpNorm, rstd: a.rstd2.pointer, dx, rows: N, channels: C)
        }
        // Attention: middle = input + [postNorm](o(attention(q, k, v))),  q/k/v from n1 = RMSNorm(input)
        let dO = outputBackward(dx, norm: w.postAttentionNorm, out: a.attentionOut, rstd: a.rstdPostAttention, g, rows: N)
        projectBackward(l, .o, x: a.attention.pointer, dy: dO, dx: g.attention.pointer, rows: N, accumulate: false, ws: ws, adapter: adapter)
        g.q.zero(); g.k.zero(); g.v.zero()
        let window = c.architecture.window(layer: l)
        let table = ropeTable(window: window, ws)
        let shape = AttentionShape(batch: ws.batch, queryLength: ws.length, keyLength: ws.length, heads: c.heads, kvHeads: c.kvHeads,
                                   headDim: c.headDim, window: window, scale: c.architecture.queryScale.map { 1 / $0.squareRoot() },
                                   softcap: c.architecture.attentionSoftcap)
        Profile.measure("backward attention") {
            Attention.backward(shape, dout: g.attention.pointer, q: a.q.pointer, k: a.k.pointer, v: a.v.pointer,
                               keyMask: UnsafePointer(ws.mask.pointer), segmentStarts: ws.segmentStarts.map { UnsafePointer($0.baseAddress!) },
                               compute: compute, logSumExp: a.logSumExp.pointer, dq: g.q.pointer, dk: g.k.pointer, dv: g.v.pointer)
        }
        Profile.measure("backward rope") {
            table.apply(g.q.pointer, rows: N, heads: c.heads, positions: ws.positions.baseAddress!, inverse: true)
            table.apply(g.k.pointer, rows: N, heads: c.kvHeads, positions: ws.positions.baseAddress!, inverse: true)
        }
        // QK-norm: back through the per-head RMSNorm to q, k as projected.
        var dq = g.q.pointer, dk = g.k.pointer
        if let qNorm = w.queryNorm, let kNorm = w.keyNorm {
            Profile.measure("backward norm") {
                g.qRaw.zero(); g.kRaw.zero()
                RMSNorm.backward(dq, a.qRaw.pointer, qNorm, rstd: a.rstdQ.pointer, g.qRaw.pointer, rows: N * c.heads, channels: c.headDim)
                RMSNorm.backward(dk, a.kRaw.pointer, kNorm, rstd: a.rstdK.pointer, g.kRaw.pointer, rows: N * c.kvHeads, channels: c.headDim)
            }
            dq = g.qRaw.pointer; dk = g.kRaw.pointer
        }
        projectBackward(l, .q, x: a.norm1.pointer, dy: dq, dx: g.norm.pointer, rows: N, accumulate: false, ws: ws, adapter: adapter)
        projectBackward(l, .k, x: a.norm1.pointer, dy: dk, dx: g.norm.pointer, rows: N, accumulate: true, ws: ws, adapter: adapter)
        projectBackward(l, .v, x: a.norm1.pointer, dy: g.v.pointer, dx: g.norm.pointer, rows: N, accumulate: true, ws: ws, adapter: adapter)
        Profile.measure("backward norm") {
            RMSNorm.backward(g.norm.pointer, ws.layerInputs[l].pointer, w.attentionNorm, rstd: a.rstd1.pointer, dx, rows: N, channels: C)
        }
    }

    /// dL/d(p's output) for a layer output added as x += p(·) (that is dx itself) or, with a sandwich norm, as
    /// x += RMSNorm(p(·)) (into g.sandwich (N, C), from p's output `out` and the norm's rstd).
    @inline(__always)
    func outputBackward(_ dx: UnsafeMutablePointer<Float>, norm: [Float]?, out: FloatBuffer, rstd: FloatBuffer, _ g: GradientBuffers,
                        rows: Int) -> UnsafeMutablePointer<Float> {
        guard let norm else { return dx }
        Profile.measure("backward norm") {
            g.sandwich.zero()
            RMSNorm.backward(dx, out.pointer, norm, rstd: rstd.pointer, g.sandwich.pointer, rows: rows, channels: config.hiddenSize)
        }
        return g.sandwich.pointer
    }
}
