// `dtrain export` and `dtrain merge`: the trained adapter where people run models — a llama.cpp GGUF
// adapter, a PEFT directory (e.g. from a GGUF adapter), an Ollama Modelfile directory, or a merged model.
import ArgumentParser
import DTFormats
import DTModel
import DTTokenizer
import DTTraining
import DTRuns
import Foundation

/// Options shared by export and merge: the adapter, its base, the output and whether to replace it.
struct AdapterIO: ParsableArguments {
    @Option(help: "The adapter: a PEFT LoRA directory (e.g. runs/NAME/final) or a llama.cpp GGUF LoRA adapter.")
    var adapter: String
    @Option(help: "The base model (default: the adapter's base_model_name_or_path when it exists, else the default model).")
    var model: String?
    @Option(name: [.customShort("o"), .long], help: "Output path.")
    var output: String
    @Flag(help: "Replace an existing output (only after the new one is complete).")
    var force = false

    /// The base model path: --model, the PEFT config's base when it exists here, or the default model.
    func basePath() throws -> String {
        if let model { return model }
        if !LoRAWeights.isGGUFFile(adapter), let base = (try? PEFTFormat.readConfig(adapter))?["base_model_name_or_path"] as? String,
           FileManager.default.fileExists(atPath: base) {
            return base
        }
        guard FileManager.default.fileExists(atPath: DefaultModel.path) else {
            throw CommandError("no base model: pass --model (the default model is not at \(DefaultModel.path))")
        }
        return DefaultModel.path
    }

    func refuseExisting() throws {
        if !force && FileManager.default.fileExists(atPath: output) {
            throw CommandError("\(output) already exists (pass --force to replace it)")
        }
    }

    /// Runs a command's body: a failed write is reported (not a SIGXFSZ kill past `ulimit -f`); usage errors
    /// go to ArgumentParser (exit 64), every other error is printed and exits 1.
    func perform(_ body: () throws -> Void) throws {
        signal(SIGXFSZ, SIG_IGN)
        do { try body() } catch let e as ValidationError { throw e } catch {
            Console.error("error: \(error)")
            throw ExitCode(1)
        }
    }

    /// Training steps recorded beside a dtrain adapter (trainer_state.json), if any.
    var trainingSteps: Int? {
        guard !LoRAWeights.isGGUFFile(adapter) else { return nil }
        return (try? Checkpoint.readState(adapter))?.step
    }
}

struct Export: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Write an adapter as a llama.cpp GGUF adapter, a PEFT directory, or an Ollama Modelfile directory.")

    @OptionGroup var io: AdapterIO
    @Option(help: "gguf (llama.cpp --lora), peft (PEFT directory) or ollama (directory with Modelfile + GGUF adapter).")
    var format: String
    @Option(help: "GGUF tensor type: f32, f16, bf16 or q8_0 (rows that are not whole Q8_0 blocks are written as f16).")
    var outtype = "f32"

    func run() throws {
        try io.perform {
            guard ["gguf", "peft", "ollama"].contains(format) else { throw ValidationError("--format must be gguf, peft or ollama, not '\(format)'") }
            guard let type = LoRAWeights.ggufOutTypes[outtype] else {
                throw ValidationError("--outtype must be one of \(LoRAWeights.ggufOutTypes.keys.sorted().joined(separator: ", ")), not '\(outtype)'")
            }
            try io.refuseExisting()
            let basePath = try io.basePath()
            let base = try ModelSource(path: basePath)
            if format == "ollama" && base.gguf == nil {
                throw CommandError("--format ollama needs a GGUF base (Ollama's FROM); \(base.path) is a Hugging Face directory")
            }
            let weights = try LoRAWeights.read(io.adapter, config: base.config)
            if format != "peft" { try weights.requireLlamaCppCompatible() }
            switch format {
            case "gguf":
                try writeGGUF(weights, base: base, type: type, to: io.output, overwrite: io.force)
            case "peft":
                try AtomicDirectory.build(io.output, replacing: io.force) { dir in
                    for (name, data) in try PEFTFormat.loraFiles(weights, config: base.config, baseModel: basePath) {
                        try AtomicDirectory.writeFile((dir as NSString).appendingPathComponent(name), data)
                    }
                }
                Console.out("wrote PEFT adapter \(io.output) (r=\(weights.options.rank), alpha=\(weights.options.alpha), \(weights.options.targets.map(\.rawValue).joined(separator: ",")))")
            default:
                try writeOllama(weights, base: base, type: type)
            }
        }
    }

    func writeGGUF(_ weights: LoRAWeights, base: ModelSource, type: GGMLType, to path: String, overwrite: Bool) throws {
        let o = weights.options
        let fellBack = try weights.writeGGUF(path, config: base.config, outType: type, description: description(weights, base: base), overwrite: overwrite)
        Console.out("wrote llama.cpp LoRA adapter \(path): \(base.config.ggufArchitecture), r=\(o.rank), adapter.lora.alpha=\(weights.llamaCppAlpha) (scale \(o.scale)\(o.rsLoRA ? ", rsLoRA" : "")), \(o.targets.map(\.rawValue).joined(separator: ",")), \(type.name)\(fellBack.isEmpty ? "" : " (\(fellBack.count) lora_b tensors as F16: rank \(o.rank) is not a whole Q8_0 block)")")
    }

    /// What the adapter is, for a user listing the GGUF's keys: base, rank, alpha, targets, steps.
    func description(_ weights: LoRAWeights, base: ModelSource) -> [GGUFMetadataEntry] {
        let o = weights.options
        var description: [GGUFMetadataEntry] = [
            .value("general.name", .string("\(Self.baseName(base)) LoRA (dtrain)")),
            .value("general.base_model.count", .u32(1)),
            .value("general.base_model.0.name", .string(Self.baseName(base))),
            .value("general.file_type", .u32(MergeOutType(rawValue: outtype)!.llamaFileType!)),
            .value("dtrain.lora.rank", .u32(UInt32(o.rank))),
            .value("dtrain.lora.alpha", .f32(o.alpha)),
            .value("dtrain.lora.use_rslora", .bool(o.rsLoRA)),
            .value("dtrain.lora.target_modules", .array(.string(o.targets.map(\.rawValue)))),
        ]
        if let steps = io.trainingSteps { description.append(.value("dtrain.training.steps", .u32(UInt32(steps)))) }
        return description
    }

    static func baseName(_ base: ModelSource) -> String {
        base.gguf?.metadata["general.name"]?.string ?? ((base.path as NSString).lastPathComponent as NSString).deletingPathExtension
    }

    /// DIR/adapter.gguf and DIR/Modelfile: FROM the base GGUF, ADAPTER, the chat template and its stops.
    func writeOllama(_ weights: LoRAWeights, base: ModelSource, type: GGMLType) throws {
        guard let g = base.gguf else {
            throw CommandError("--format ollama needs a GGUF base (Ollama's FROM); \(base.path) is a Hugging Face directory")
        }
        let tokenizer = try Tokenizer(gguf: g)
        let template = try ModelChatTemplate(tokenizer: tokenizer, source: g.path).required()
        let absoluteBase = URL(fileURLWithPath: base.path).standardizedFileURL.path
        var modelfile = "# Made by dtrain export --format ollama: ollama create NAME -f Modelfile\n"
        modelfile += "FROM \(absoluteBase)\nADAPTER ./adapter.gguf\n"
        modelfile += "TEMPLATE \"\"\"\(template.ollamaTemplate)\"\"\"\n"
        if let system = template.defaultSystem { modelfile += "SYSTEM \"\"\"\(system)\"\"\"\n" }
        for stop in template.ollamaStops { modelfile += "PARAMETER stop \"\(stop)\"\n" }
        try AtomicDirectory.build(io.output, replacing: io.force) { dir in
            _ = try weights.writeGGUF((dir as NSString).appendingPathComponent("adapter.gguf"), config: base.config, outType: type,
                                      description: description(weights, base: base), overwrite: false)
            try AtomicDirectory.writeFile((dir as NSString).appendingPathComponent("Modelfile"), Data(modelfile.utf8))
        }
        Console.out("wrote \(io.output)/Modelfile (FROM \(absoluteBase), ADAPTER ./adapter.gguf, \(template.family.rawValue) template); run: ollama create NAME -f \(io.output)/Modelfile")
    }
}

struct Merge: ParsableCommand {
    static let configuration = CommandConfiguration(
        abstract: "Fold a LoRA adapter into its base (W + s·B·A; DoRA: m / ‖W + s·B·A‖ ⊙ (W + s·B·A)) and write the merged model as GGUF or a Hugging Face directory.")

    @OptionGroup var io: AdapterIO
    @Option(help: "gguf (needs a GGUF base; every base key is kept) or hf (config.json, safetensors shards, tokenizer files).")
    var format: String
    @Option(help: "f32, f16, bf16, q8_0, q4_0, q4_1 (GGUF only) or same (GGUF: merged tensors in the base's type, the rest copied; HF: float dtypes kept, GGUF blocks as f32). Default: f16 for gguf (as llama-export-lora), same for hf.")
    var outtype: String?
    @Option(help: "HF: largest safetensors shard in bytes (suffixes KB, MB, GB).")
    var maxShardSize = "5GB"

    func run() throws {
        try io.perform {
            guard ["gguf", "hf"].contains(format) else { throw ValidationError("--format must be gguf or hf, not '\(format)'") }
            let outtype = self.outtype ?? (format == "gguf" ? "f16" : "same")
            guard let type = MergeOutType(rawValue: outtype) else {
                throw ValidationError("--outtype must be one of \(MergeOutType.allCases.map(\.rawValue).joined(separator: ", ")), not '\(outtype)'")
            }
            if format == "hf" && type.ggml.map({ ![.f32, .f16, .bf16].contains($0) }) == true {
                throw ValidationError("--outtype \(outtype) is a GGUF block type; --format hf takes f32, f16, bf16 or same")
            }
            guard let shardBytes = Self.bytes(maxShardSize), shardBytes > 0 else {
                throw ValidationError("--max-shard-size must be a size like 500MB or 5GB, not '\(maxShardSize)'")
            }
            try io.refuseExisting()
            let basePath = try io.basePath()
            let base = try ModelSource(path: basePath)
            let weights = try LoRAWeights.read(io.adapter, config: base.config)
            let started = Date()
            let report: MergeReport
            if format == "gguf" {
                let note: [GGUFMetadataEntry] = [
                    .value("dtrain.merge.adapter", .string((io.adapter as NSString).lastPathComponent)),
                    .value("dtrain.merge.lora_rank", .u32(UInt32(weights.options.rank))),
                    .value("dtrain.merge.lora_scale", .f32(weights.options.scale)),
                    .value("dtrain.merge.use_dora", .bool(weights.options.useDoRA)),
                    .value("dtrain.merge.target_modules", .array(.string(weights.options.targets.map(\.rawValue)))),
                ]
                report = try ModelMerge.toGGUF(base: base, weights: weights, outType: type, path: io.output, overwrite: io.force, extraMetadata: note)
            } else {
                report = try ModelMerge.toHF(base: base, weights: weights, outType: type, dir: io.output, overwrite: io.force, maxShardBytes: shardBytes)
            }
            for note in report.notes.prefix(5) { Console.error("note: \(note)") }
            if report.notes.count > 5 { Console.error("note: … and \(report.notes.count - 5) more") }
            Console.out(String(format: "wrote %@ (%@, %@): %d tensors merged, %d converted, %d copied, %.1f s",
                               io.output, format, outtype, report.merged, report.converted, report.copied, Date().timeIntervalSince(started)))
            if format == "gguf" {
                let kept = report.keptFraction
                Console.out(String(format: "the merged tensors carry %.1f%% of the adapter's change ⟨Q(W+ΔW) − W, ΔW⟩ / ‖ΔW‖²", 100 * kept))
                if kept < 0.5 {
                    Console.error(String(format: "warning: re-encoding as %@ keeps only %.0f%% of the adapter's change (its blocks are too coarse for ΔW), so the merged model behaves much like the base; use --outtype q8_0, f16 or f32", outtype, 100 * kept))
                }
            }
        }
    }

    /// "5GB" → 5·10⁹ (decimal units, as transformers' max_shard_size).
    static func bytes(_ text: String) -> Int? {
        let units: [(String, Int)] = [("GB", 1_000_000_000), ("MB", 1_000_000), ("KB", 1_000), ("B", 1)]
        let t = text.uppercased()
        for (suffix, scale) in units where t.hasSuffix(suffix) {
            return Double(t.dropLast(suffix.count)).flatMap { $0.isFinite && $0 > 0 ? Int($0 * Double(scale)) : nil }
        }
        return Int(t)
    }
}
