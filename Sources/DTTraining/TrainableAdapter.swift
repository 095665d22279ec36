// What the trainer needs of an adapter kind beyond the model hooks: its parameters (one arena), a switch for
// training-only behaviour (dropout), and its interoperable files. LoRA and prompt tuning implement it.
import DTModel
import Foundation

public protocol TrainableAdapter: ModelAdapter {
    var arena: ParameterArena { get }
    /// Called before each forward: whether this pass trains, the step (seeds dropout) and one key per row
    /// (global sample index and position) so random masks do not depend on the number of ranks.
    func prepare(training: Bool, step: Int, rowKeys: [UInt64])
    /// The adapter as PEFT files (adapter_config.json + adapter_model.safetensors).
    func peftFiles(baseModel: String) throws -> [(String, Data)]
}

extension LoRAAdapter: TrainableAdapter {
    public func prepare(training: Bool, step: Int, rowKeys: [UInt64]) {
        self.training = training
        self.rowKeys = rowKeys
        dropoutSalt = UInt64(step) &* 0x2545_F491_4F6C_DD1D
    }

    public func peftFiles(baseModel: String) throws -> [(String, Data)] { try PEFTFormat.loraFiles(self, baseModel: baseModel) }
}

public enum AdapterLoader {
    /// Loads a PEFT adapter directory of any supported type (LORA, PROMPT_TUNING) or a llama.cpp GGUF LoRA
    /// adapter onto `model`.
    public static func load(_ dir: String, model: LlamaModel) throws -> TrainableAdapter {
        if LoRAWeights.isGGUFFile(dir) { return try LoRAWeights.readGGUF(dir, config: model.config).adapter(model: model) }
        switch try PEFTFormat.peftType(dir) {
        case "PROMPT_TUNING": return try PromptTuningAdapter.load(dir, model: model)
        default: return try PEFTFormat.loadLoRA(dir, model: model)
        }
    }
}
