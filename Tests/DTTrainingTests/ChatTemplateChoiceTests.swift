// ModelChatTemplate, the one place commands find their chat template: a named family wins and an unknown name is
// refused at once; a model without a usable template is fine until chat messages need one, and then the error
// names the file, the line and why there is none. Training and probe data read chat messages the same way.
import DTFormats
import DTTokenizer
import DTTraining
import Foundation
import TestSupport
import XCTest

final class ChatTemplateChoiceTests: XCTestCase {
    /// A tiny tokenizer directory; `template` replaces tokenizer_config.json's chat_template (nil: none).
    func tokenizer(template: String?) throws -> Tokenizer {
        let dir = temporaryDirectory()
        TinyTokenizer.write(into: dir)
        if template != "keep" {
            var config = try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: dir + "/tokenizer_config.json"))) as! [String: Any]
            config["chat_template"] = template
            try JSONSerialization.data(withJSONObject: config).write(to: URL(fileURLWithPath: dir + "/tokenizer_config.json"))
        }
        return try Tokenizer(tokenizerJSON: dir + "/tokenizer.json")
    }

    func write(_ lines: [String]) throws -> String {
        let path = temporaryDirectory() + "/data.jsonl"
        try lines.joined(separator: "\n").write(toFile: path, atomically: true, encoding: .utf8)
        return path
    }

    /// Invariant: the model's recognised template is used; a named family overrides it; an unknown name throws.
    func testNamedFamilyOverridesAndUnknownNameIsRefused() throws {
        let tok = try tokenizer(template: "keep")
        XCTAssertEqual(try ModelChatTemplate(tokenizer: tok, source: "m").template?.family, .chatml)
        XCTAssertEqual(try ModelChatTemplate(tokenizer: tok, named: "llama3", source: "m").template?.family, .llama3)
        XCTAssertThrowsError(try ModelChatTemplate(tokenizer: tok, named: "chatm1", source: "m")) { e in
            XCTAssertTrue("\(e)".contains("unknown chat template 'chatm1'") && "\(e)".contains("chatml"), "\(e)")
        }
    }

    /// Invariant: without a template (none, or unrecognised markers) plain records still load, and the first chat
    /// record is refused naming the file, its line and the reason (not silently read some other way).
    func testMissingTemplateIsReportedAtTheFirstChatRecord() throws {
        for (template, reason) in [(nil as String?, "has no chat template"), ("{{ messages }}", "unrecognised chat template")] {
            let tok = try tokenizer(template: template)
            let choice = try ModelChatTemplate(tokenizer: tok, source: "tiny")
            XCTAssertNil(choice.template)
            let plain = try write([#"{"prompt": "a", "completion": "b"}"#])
            XCTAssertEqual(try Dataset.load(path: plain, tokenizer: tok, template: choice, options: DataOptions()).count, 1)
            let chat = try write([#"{"text": "fine"}"#, #"{"messages": [{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yo"}]}"#])
            XCTAssertThrowsError(try Dataset.load(path: chat, tokenizer: tok, template: choice, options: DataOptions())) { e in
                XCTAssertTrue("\(e)".contains(chat) && "\(e)".contains("line 2") && "\(e)".contains(reason), "\(e)")
            }
            let probe = try write([#"{"messages": [{"role": "user", "content": "hi"}], "label": "x"}"#])
            XCTAssertThrowsError(try ProbeDataset.load(path: probe, tokenizer: tok, template: choice, maxLength: 64)) { e in
                XCTAssertTrue("\(e)".contains("line 1") && "\(e)".contains(reason), "\(e)")
            }
        }
    }

    /// Invariant: a probe's chat record is rendered exactly as a training record's prompt side is, and its roles
    /// are checked the same way (an unknown role is refused, naming it).
    func testProbeTextIsTheTemplatesRendering() throws {
        let tok = try tokenizer(template: "keep")
        let choice = try ModelChatTemplate(tokenizer: tok, source: "tiny")
        let messages: [[String: Any]] = [["role": "user", "content": "hi"], ["role": "assistant", "content": "yo"]]
        let text = try ProbeDataset.text(of: ["messages": messages], file: "f", line: 3, template: choice)
        XCTAssertEqual(text, try choice.required().renderText([ChatMessage(role: "user", content: "hi"), ChatMessage(role: "assistant", content: "yo")],
                                                              addGenerationPrompt: false))
        XCTAssertThrowsError(try ProbeDataset.text(of: ["messages": [["role": "robot", "content": "x"]]], file: "f", line: 3, template: choice)) { e in
            XCTAssertTrue("\(e)".contains("line 3") && "\(e)".contains("\"robot\""), "\(e)")
        }
    }
}
