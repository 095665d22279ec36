// The one place a command finds its chat template: the family the user named, else the model's own, recognised.
// A model without a usable template is not an error until chat messages need one; then the reason is given.
import DTFormats
import Foundation

public enum ModelChatTemplate: Sendable {
    case available(ChatTemplate)
    /// Why there is no template (no tokenizer.chat_template, or one without known markers), naming the model file.
    case unavailable(FormatError)

    /// `named` (a family name, e.g. from chat_template or --chat-template) overrides the model's template; an unknown
    /// name throws at once. `source` names the model file in messages.
    public init(tokenizer: Tokenizer, named: String? = nil, source: String) throws {
        if named != nil {   // an unknown name is the user's typo: refused now, not when a chat example comes
            self = .available(try ChatTemplate(jinja: tokenizer.chatTemplate, named: named, source: source))
            return
        }
        do { self = .available(try ChatTemplate(jinja: tokenizer.chatTemplate, source: source)) } catch let error as FormatError {
            self = .unavailable(error)
        }
    }

    public var template: ChatTemplate? {
        if case .available(let t) = self { return t }
        return nil
    }

    /// The template, or the reason there is none (a FormatError naming the model file).
    public func required() throws -> ChatTemplate {
        switch self {
        case .available(let t): return t
        case .unavailable(let reason): throw reason
        }
    }
}
