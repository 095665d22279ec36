// The probe's linear head on cached features: standardised inputs, AdamW, softmax cross-entropy (optionally
// class-weighted) or MSE, mini-batches in a seeded order, early stopping on validation loss. Saved with the
// standardisation folded in, so score.weight / score.bias apply to raw hidden states as in HF.
import DTFormats
import DTKernels
import DTModel
import Foundation

public struct ProbeMetrics: Sendable {
    public var loss: Double
    public var accuracy: Double = 0, macroF1: Double = 0
    public var confusion: [[Int]] = []      // [true][predicted]
    public var rmse: Double = 0, r2: Double = 0
}

public final class ProbeHead {
    public let outputs: Int, channels: Int
    public let options: ProbeOptions
    public let arena: ParameterArena       // score.weight (L, C) [+ score.bias (L)] in standardised feature space
    var mean: [Float], scale: [Float]      // per-channel standardisation (C)

    public init(outputs: Int, channels: Int, options: ProbeOptions) {
        self.outputs = outputs; self.channels = channels; self.options = options
        var specs: [(name: String, shape: [Int])] = [(name: "score.weight", shape: [outputs, channels])]
        if options.bias { specs.append((name: "score.bias", shape: [outputs])) }
        arena = ParameterArena(specs)
        mean = [Float](repeating: 0, count: channels); scale = [Float](repeating: 1, count: channels)
    }

    /// logits (n, L) of raw features (n, C).
    public func logits(_ features: [Float]) -> [Float] {
        let n = features.count / channels
        var x = standardised(features)
        var out = [Float](repeating: 0, count: n * outputs)
        BLAS.linear(&x, arena.value(arena.entry("score.weight")!), &out, rows: n, inFeatures: channels, outFeatures: outputs)
        if let b = arena.entry("score.bias") { Vector.addBias(&out, arena.value(b), rows: n, cols: outputs) }
        return out
    }

    func standardised(_ f: [Float]) -> [Float] {
        var x = f
        for i in 0..<x.count { x[i] = (x[i] - mean[i % channels]) * scale[i % channels] }
        return x
    }

    /// Loss and gradient (into the arena) on rows `rows` of standardised features x (n, C).
    func lossAndGradient(_ x: [Float], classes: [Int], values: [Float], weights: [Float], rows: [Int], accumulate: Bool) -> Double {
        if !accumulate { arena.zeroGradients() }
        let W = arena.value(arena.entry("score.weight")!), gW = arena.gradient(arena.entry("score.weight")!)
        let bias = arena.entry("score.bias")
        var logits = [Float](repeating: 0, count: outputs)
        var total = 0.0, weightSum = 0.0
        for r in rows { weightSum += Double(values.isEmpty ? weights[classes[r]] : 1) }
        for r in rows {
            let xr = Array(x[(r * channels)..<((r + 1) * channels)])
            for o in 0..<outputs {
                var s: Float = bias.map { arena.value($0)[o] } ?? 0
                for c in 0..<channels { s += W[o * channels + c] * xr[c] }
                logits[o] = s
            }
            var d = [Float](repeating: 0, count: outputs)
            if values.isEmpty {
                let w = Double(weights[classes[r]])
                let lse = logits.withUnsafeBufferPointer { Softmax.logSumExp($0.baseAddress!, count: outputs) }
                total += w * (lse - Double(logits[classes[r]]))
                for o in 0..<outputs { d[o] = Float(w / weightSum) * (expf(logits[o] - Float(lse)) - (o == classes[r] ? 1 : 0)) }
            } else {
                let diff = logits[0] - values[r]
                total += Double(diff * diff)
                d[0] = 2 * diff / Float(weightSum)
            }
            for o in 0..<outputs {
                for c in 0..<channels { gW[o * channels + c] += d[o] * xr[c] }
                if let bias { arena.gradient(bias)[o] += d[o] }
            }
        }
        return total / weightSum
    }

    /// Trains on (features, targets), early-stopping on the validation set if given. Returns epochs run.
    @discardableResult
    public func train(features: [Float], classes: [Int], values: [Float], valid: (features: [Float], classes: [Int], values: [Float])?,
                      log: (Int, Double, Double?) -> Void = { _, _, _ in }) -> Int {
        let n = features.count / channels
        for c in 0..<channels {
            var s = 0.0, s2 = 0.0
            for r in 0..<n { let v = Double(features[r * channels + c]); s += v; s2 += v * v }
            let m = s / Double(n)
            mean[c] = options.bias ? Float(m) : 0   // without a bias the centring could not be folded into the head
            scale[c] = Float(1 / max((s2 / Double(n) - m * m).squareRoot(), 1e-6))
        }
        let x = standardised(features)
        let xv = valid.map { standardised($0.features) }
        var weights = [Float](repeating: 1, count: outputs)
        if options.balancedClassWeights && values.isEmpty {
            var counts = [Int](repeating: 0, count: outputs)
            for c in classes { counts[c] += 1 }
            for o in 0..<outputs { weights[o] = Float(n) / Float(outputs * max(1, counts[o])) }
        }
        var optimizer = AdamW(weightDecay: options.weightDecay)
        var best = Double.infinity, bestValues = arena.array("score.weight"), bestBias = arena.array("score.bias"), since = 0
        var epochsRun = 0
        for epoch in 0..<options.epochs {
            let order = SampleOrder.permutation(count: n, seed: options.seed, epoch: epoch)
            let batch = options.batchSize > 0 ? options.batchSize : n
            var trainLoss = 0.0
            for start in stride(from: 0, to: n, by: batch) {
                let rows = Array(order[start..<min(start + batch, n)])
                trainLoss = lossAndGradient(x, classes: classes, values: values, weights: weights, rows: rows, accumulate: false)
                optimizer.update(arena, lr: options.learningRate)
            }
            epochsRun = epoch + 1
            var validLoss: Double?
            if let valid, let xv {
                let unit = [Float](repeating: 1, count: outputs)
                validLoss = lossAndGradient(xv, classes: valid.classes, values: valid.values, weights: unit,
                                            rows: Array(0..<(valid.features.count / channels)), accumulate: false)
                if validLoss! < best - 1e-6 {
                    best = validLoss!; since = 0
                    bestValues = arena.array("score.weight"); bestBias = arena.array("score.bias")
                } else {
                    since += 1
                }
            }
            log(epochsRun, trainLoss, validLoss)
            if options.patience > 0 && since >= options.patience { break }
        }
        if valid != nil {
            arena.set("score.weight", bestValues)
            if options.bias { arena.set("score.bias", bestBias) }
        }
        return epochsRun
    }

    public func evaluate(features: [Float], classes: [Int], values: [Float]) -> ProbeMetrics {
        let n = features.count / channels
        let z = logits(features)
        if !values.isEmpty {
            var se = 0.0, meanValue = 0.0, ss = 0.0
            for v in values { meanValue += Double(v) }
            meanValue /= Double(n)
            for r in 0..<n { let d = Double(z[r] - values[r]); se += d * d; ss += (Double(values[r]) - meanValue) * (Double(values[r]) - meanValue) }
            return ProbeMetrics(loss: se / Double(n), rmse: (se / Double(n)).squareRoot(), r2: 1 - se / max(ss, 1e-12))
        }
        var confusion = [[Int]](repeating: [Int](repeating: 0, count: outputs), count: outputs)
        var loss = 0.0
        for r in 0..<n {
            let row = Array(z[(r * outputs)..<((r + 1) * outputs)])
            let predicted = row.indices.max { row[$0] < row[$1] }!
            confusion[classes[r]][predicted] += 1
            loss += row.withUnsafeBufferPointer { Softmax.logSumExp($0.baseAddress!, count: outputs) } - Double(row[classes[r]])
        }
        let correct = (0..<outputs).reduce(0) { $0 + confusion[$1][$1] }
        var f1 = 0.0
        for c in 0..<outputs {
            let tp = Double(confusion[c][c])
            let predicted = Double((0..<outputs).reduce(0) { $0 + confusion[$1][c] }), actual = Double(confusion[c].reduce(0, +))
            let p = predicted > 0 ? tp / predicted : 0, rc = actual > 0 ? tp / actual : 0
            f1 += p + rc > 0 ? 2 * p * rc / (p + rc) : 0
        }
        return ProbeMetrics(loss: loss / Double(n), accuracy: Double(correct) / Double(n), macroF1: f1 / Double(outputs), confusion: confusion)
    }

    /// score.weight / score.bias acting on raw features: W' = W·diag(scale), b' = b − W'·mean.
    public func exportedTensors() -> (weight: [Float], bias: [Float]) {
        let W = arena.array("score.weight")
        var w2 = W, b2 = options.bias ? arena.array("score.bias") : [Float](repeating: 0, count: outputs)
        for o in 0..<outputs {
            for c in 0..<channels {
                w2[o * channels + c] = W[o * channels + c] * scale[c]
                b2[o] -= w2[o * channels + c] * mean[c]
            }
        }
        return (w2, b2)
    }

    /// Loads exported tensors (identity standardisation).
    public func load(weight: [Float], bias: [Float]?) {
        arena.set("score.weight", weight)
        if let bias, options.bias { arena.set("score.bias", bias) }
        mean = [Float](repeating: 0, count: channels); scale = [Float](repeating: 1, count: channels)
    }
}
