// A Hugging Face model directory written as transformers saves one: safetensors shards of at most
// `maxShardBytes` (one file `model.safetensors` when everything fits, else `model-0000i-of-0000n.safetensors`
// plus `model.safetensors.index.json`), and side files (config, tokenizer). Tensors are produced one at a
// time, in order, so only one is in memory; the directory appears whole (AtomicDirectory.build) or not at all.
import DTFormats
import Foundation

public enum HFDirectoryWriter {
    public struct TensorPlan {
        public var name: String
        public var dtype: SafetensorsDType
        public var shape: [Int]
        public var bytes: Int { shape.reduce(1, *) * dtype.size }
        public init(name: String, dtype: SafetensorsDType, shape: [Int]) { self.name = name; self.dtype = dtype; self.shape = shape }
    }

    /// Writes `tensors` (tensor i's bytes from `produce(i)`, called once per tensor in order) and `sideFiles`.
    public static func write(_ dir: String, overwrite: Bool, tensors: [TensorPlan], maxShardBytes: Int,
                             sideFiles: [(String, Data)], produce: (Int) throws -> [UInt8]) throws {
        var shards: [[Int]] = [[]]
        var used = 0
        for (i, t) in tensors.enumerated() {   // a tensor larger than a shard gets a shard of its own
            if used > 0 && used + t.bytes > maxShardBytes { shards.append([]); used = 0 }
            shards[shards.count - 1].append(i)
            used += t.bytes
        }
        let fileNames = shards.count == 1 ? ["model.safetensors"]
            : (1...shards.count).map { String(format: "model-%05d-of-%05d.safetensors", $0, shards.count) }
        try AtomicDirectory.build(dir, replacing: overwrite) { temporary in
            var weightMap: [String: String] = [:]
            for (shard, file) in zip(shards, fileNames) {
                let header = SafetensorsWriter.header(shard.map { (tensors[$0].name, tensors[$0].dtype, tensors[$0].shape) }, metadata: ["format": "pt"])
                let out = try AtomicFileWriter(path: (temporary as NSString).appendingPathComponent(file), overwrite: false)
                try header.withUnsafeBytes { try out.write($0) }
                for i in shard {
                    let bytes = try produce(i)
                    precondition(bytes.count == tensors[i].bytes, "\(tensors[i].name): \(bytes.count) bytes for \(tensors[i].bytes)")
                    try bytes.withUnsafeBytes { try out.write($0) }
                    weightMap[tensors[i].name] = file
                }
                try out.commit()
            }
            if shards.count > 1 {
                let index: [String: Any] = ["metadata": ["total_size": tensors.map(\.bytes).reduce(0, +)], "weight_map": weightMap]
                try AtomicDirectory.writeFile((temporary as NSString).appendingPathComponent("model.safetensors.index.json"),
                                              try JSONSerialization.data(withJSONObject: index, options: [.prettyPrinted, .sortedKeys]))
            }
            for (file, data) in sideFiles { try AtomicDirectory.writeFile((temporary as NSString).appendingPathComponent(file), data) }
        }
    }

    /// transformers' name of a safetensors dtype ("float32", "float16", "bfloat16").
    public static func torchName(_ dtype: SafetensorsDType) -> String {
        dtype == .bf16 ? "bfloat16" : dtype == .f16 ? "float16" : "float32"
    }
}
