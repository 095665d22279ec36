// Chat templates recognised by family from markers in the Jinja text (as llama.cpp does), rendered without
// a Jinja engine. Rendering yields segments so training can put the loss on assistant turns only.
import DTFormats
import Foundation

public struct ChatMessage: Equatable, Sendable {
    public var role: String
    public var content: String
    public init(role: String, content: String) { self.role = role; self.content = content }
}

public enum ChatTemplateFamily: String, CaseIterable, Sendable {
    case chatml, llama3, llama2, gemma, phi3, zephyr
}

public struct ChatTemplate: Sendable {
    public let family: ChatTemplateFamily
    /// System prompt the template inserts when the conversation has none (SmolLM2's does).
    public let defaultSystem: String?

    public struct Segment: Equatable {
        public var text: String
        /// True for assistant replies (and their end-of-turn marker): the tokens trained on.
        public var isAssistant: Bool
    }

    public init(family: ChatTemplateFamily, defaultSystem: String? = nil) {
        self.family = family
        self.defaultSystem = defaultSystem
    }

    /// Recognises the family of a Jinja template text; `named` (a family name) overrides it.
    public init(jinja: String?, named: String? = nil, source: String) throws {
        if let named {
            guard let f = ChatTemplateFamily(rawValue: named) else {
                throw CommandError("unknown chat template '\(named)' (expected one of \(ChatTemplateFamily.allCases.map(\.rawValue).joined(separator: ", ")))")
            }
            self.init(family: f, defaultSystem: jinja.flatMap(Self.defaultSystemPrompt))
            return
        }
        guard let t = jinja else {
            throw FormatError(file: source, location: "", "the model has no chat template (tokenizer.chat_template); name one with --chat-template (\(ChatTemplateFamily.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        let family: ChatTemplateFamily
        if t.contains("<|im_start|>") { family = .chatml }
        else if t.contains("<|start_header_id|>") { family = .llama3 }
        else if t.contains("<start_of_turn>") { family = .gemma }
        else if t.contains("<|user|>") && t.contains("<|end|>") { family = .phi3 }
        else if t.contains("<|user|>") { family = .zephyr }
        else if t.contains("[INST]") { family = .llama2 }
        else {
            throw FormatError(file: source, location: "tokenizer.chat_template", "unrecognised chat template (no known markers); name one with --chat-template (\(ChatTemplateFamily.allCases.map(\.rawValue).joined(separator: ", ")))")
        }
        self.init(family: family, defaultSystem: family == .chatml ? Self.defaultSystemPrompt(t) : nil)
    }

    /// The literal system turn a ChatML template inserts when none is given, e.g. SmolLM2's.
    static func defaultSystemPrompt(_ jinja: String) -> String? {
        // The Jinja text writes the newline either as a real newline or as the escape \n.
        let t = jinja.replacingOccurrences(of: "\\n", with: "\n")
        guard let start = t.range(of: "'<|im_start|>system\n") ?? t.range(of: "\"<|im_start|>system\n"),
              let end = t.range(of: "<|im_end|>", range: start.upperBound..<t.endIndex) else { return nil }
        let text = String(t[start.upperBound..<end.lowerBound])
        guard !text.contains("{{"), !text.contains("'"), !text.contains("\""), !text.isEmpty else { return nil }
        return text
    }

    public func render(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> [Segment] {
        var out: [Segment] = []
        func plain(_ s: String) { out.append(Segment(text: s, isAssistant: false)) }
        func reply(_ s: String) { out.append(Segment(text: s, isAssistant: true)) }
        var messages = messages
        if let system = defaultSystem, messages.first?.role != "system" {
            messages.insert(ChatMessage(role: "system", content: system), at: 0)
        }
        switch family {
        case .chatml:
            for m in messages {
                plain("<|im_start|>\(m.role)\n")
                if m.role == "assistant" { reply("\(m.content)<|im_end|>"); plain("\n") } else { plain("\(m.content)<|im_end|>\n") }
            }
            if addGenerationPrompt { plain("<|im_start|>assistant\n") }
        case .llama3:
            plain("<|begin_of_text|>")
            for m in messages {
                plain("<|start_header_id|>\(m.role)<|end_header_id|>\n\n")
                if m.role == "assistant" { reply("\(m.content)<|eot_id|>") } else { plain("\(m.content)<|eot_id|>") }
            }
            if addGenerationPrompt { plain("<|start_header_id|>assistant<|end_header_id|>\n\n") }
        case .llama2:
            var system: String?
            for m in messages {
                switch m.role {
                case "system": system = m.content
                case "assistant": reply(" \(m.content)</s>")
                default:
                    let prefix = system.map { "<<SYS>>\n\($0)\n<</SYS>>\n\n" } ?? ""
                    system = nil
                    plain("<s>[INST] \(prefix)\(m.content) [/INST]")
                }
            }
        case .gemma:
            plain("<bos>")
            var system: String?
            for m in messages {
                if m.role == "system" { system = m.content; continue }
                let role = m.role == "assistant" ? "model" : "user"
                plain("<start_of_turn>\(role)\n")
                let content = (system.map { "\($0)\n\n" } ?? "") + m.content
                system = nil
                if role == "model" { reply("\(m.content)<end_of_turn>"); plain("\n") } else { plain("\(content)<end_of_turn>\n") }
            }
            if addGenerationPrompt { plain("<start_of_turn>model\n") }
        case .phi3, .zephyr:
            let end = family == .phi3 ? "<|end|>" : "</s>"
            for m in messages {
                plain("<|\(m.role)|>\n")
                if m.role == "assistant" { reply("\(m.content)\(end)"); plain("\n") } else { plain("\(m.content)\(end)\n") }
            }
            if addGenerationPrompt { plain("<|assistant|>\n") }
        }
        return out
    }

    public func renderText(_ messages: [ChatMessage], addGenerationPrompt: Bool) -> String {
        render(messages, addGenerationPrompt: addGenerationPrompt).map(\.text).joined()
    }
}
