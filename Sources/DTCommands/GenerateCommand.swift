// `dtrain generate`: streamed text from a prompt, with the model's chat template by default.
import ArgumentParser
import DTFormats
import DTModel
import DTTokenizer
import DTTraining
import DTRuns
import Foundation

struct Generate: ParsableCommand {
    static let configuration = CommandConfiguration(abstract: "Generate text from a prompt (streamed).")

    @OptionGroup var modelOptions: ModelOptions
    @OptionGroup var runtimeOptions: RuntimeOptions
    @Option(name: .shortAndLong, help: "The prompt (a user message when the chat template is on).")
    var prompt: String
    @Option(help: "System message (chat template only).")
    var system: String?
    @Flag(inversion: .prefixedNo, help: "Wrap the prompt in the model's chat template.")
    var chat = true
    @Option(help: "Chat template family to use instead of recognising the model's: chatml, llama3, llama2, gemma, phi3, zephyr.")
    var chatTemplate: String?
    @Option(help: "Tokens to generate at most.")
    var maxTokens = 128
    @Option(help: "Sampling temperature; 0 is greedy.")
    var temperature: Float = 0
    @Option(help: "Keep only the k most likely tokens (0: all).")
    var topK = 0
    @Option(help: "Nucleus sampling: keep the smallest set with this probability mass.")
    var topP: Float = 1
    @Option(help: "Random seed for sampling.")
    var seed: UInt64 = 0

    func validate() throws {
        guard maxTokens >= 1 else { throw ValidationError("--max-tokens: expected an integer ≥ 1, found \(maxTokens)") }
        guard temperature.isFinite, temperature >= 0 else { throw ValidationError("--temperature: expected a finite number ≥ 0, found \(temperature)") }
        guard topK >= 0 else { throw ValidationError("--top-k: expected an integer ≥ 0 (0: all), found \(topK)") }
        guard topP > 0, topP <= 1 else { throw ValidationError("--top-p: expected a number in (0, 1], found \(topP)") }
    }

    func run() throws {
        let runtime = Runtime(threads: runtimeOptions.threads)
        runtime.run {
            let loaded = try ModelLoader.load(modelOptions.model, precision: try modelOptions.weightPrecision(), compute: try modelOptions.computePrecision(), report: { runtime.log($0) })
            let tok = loaded.tokenizer
            var text = prompt
            if chat {
                var messages = [ChatMessage(role: "user", content: prompt)]
                if let system { messages.insert(ChatMessage(role: "system", content: system), at: 0) }
                text = try ModelChatTemplate(tokenizer: tok, named: chatTemplate, source: loaded.path).required()
                    .renderText(messages, addGenerationPrompt: true)
            }
            let ids = tok.encode(text, addSpecial: true)
            guard !ids.isEmpty else { throw CommandError("the prompt is empty") }
            let adapter = try modelOptions.adapter.map { try AdapterLoader.load($0, model: loaded.model) }
            if let virtual = adapter?.virtualTokens, virtual > 0 {
                try loaded.model.reservePositions(virtual + 2, for: "the adapter \(modelOptions.adapter!)'s \(virtual) virtual tokens, one prompt token and one generated token")
            }
            let generator = Generator(model: loaded.model, capacity: ids.count + maxTokens + 1, adapter: adapter)
            var stop = Set<Int32>()
            if let eos = tok.eosToken { stop.insert(eos) }
            for name in ["<|im_end|>", "<|eot_id|>", "<end_of_turn>", "<|end|>", "<|endoftext|>"] {
                if let id = tok.tokenIds[name] { stop.insert(id) }
            }
            var stream = StreamingDecoder(tok)
            let started = Date()
            let out = generator.generate(prompt: ids, maxTokens: maxTokens,
                                         sampling: SamplingOptions(temperature: temperature, topK: topK, topP: topP, seed: seed),
                                         stop: stop) { id in
                guard runtime.comm.isRoot, !stop.contains(id) else { return }
                Console.out(stream.push(id), terminator: "")
            }
            let seconds = Date().timeIntervalSince(started)
            if runtime.comm.isRoot {
                Console.out("")
                Console.error(String(format: "[%d prompt + %d generated tokens in %.2f s: %.1f tokens/s]",
                                     ids.count, out.count, seconds, Double(ids.count + out.count) / seconds))
            }
        }
    }
}
