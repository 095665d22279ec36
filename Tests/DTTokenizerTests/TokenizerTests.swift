// The tokenizer against Hugging Face `tokenizers` (fixtures from scripts/make_fixtures.py): the same ids for
// varied texts from the GGUF vocabulary and from tokenizer.json, decode round trips, chat templates.
import DTFormats
import DTTokenizer
import Foundation
import TestSupport
import XCTest

final class TokenizerTests: XCTestCase {
    struct Case { let text: String; let ids: [Int32]; let idsWithSpecial: [Int32]? }

    func fixture(_ name: String) throws -> String {
        try XCTUnwrap(Bundle.module.path(forResource: "Fixtures/\(name)", ofType: nil), "fixture \(name) missing: run scripts/make_fixtures.py")
    }

    func cases() throws -> [Case] {
        let data = try Data(contentsOf: URL(fileURLWithPath: try fixture("smollm2_tokenizer_cases.json")))
        let json = try XCTUnwrap(try JSONSerialization.jsonObject(with: data) as? [String: Any])
        let list = try XCTUnwrap(json["cases"] as? [[String: Any]])
        return list.map { c in
            Case(text: c["text"] as! String, ids: (c["ids"] as! [NSNumber]).map { Int32($0.intValue) },
                 idsWithSpecial: (c["ids_with_special"] as? [NSNumber])?.map { Int32($0.intValue) })
        }
    }

    func defaultModelTokenizer() throws -> Tokenizer? {
        guard let path = TestPaths.defaultModel else {
            if TestPaths.modelRequired { XCTFail("the default model is required (DTRAIN_REQUIRE_MODEL=1) but missing") }
            return nil
        }
        return try Tokenizer(gguf: GGUFFile(path: path))
    }

    /// Invariant: encode(text) == HF tokenizers' ids for every fixture text (GGUF vocabulary).
    func testGGUFTokenizerMatchesHuggingFace() throws {
        guard let tok = try defaultModelTokenizer() else { return }
        let all = try cases()
        XCTAssertGreaterThanOrEqual(all.count, 20)
        for c in all {
            XCTAssertEqual(tok.encode(c.text), c.ids, "text: \(String(reflecting: c.text))")
            if let special = c.idsWithSpecial { XCTAssertEqual(tok.encode(c.text, addSpecial: true), special) }
        }
    }

    /// Invariant: the tokenizer.json path gives the same ids as HF (and so as the GGUF path).
    func testTokenizerJSONMatchesHuggingFace() throws {
        let tok = try Tokenizer(tokenizerJSON: try fixture("smollm2_tokenizer.json"))
        for c in try cases() { XCTAssertEqual(tok.encode(c.text), c.ids, "text: \(String(reflecting: c.text))") }
    }

    /// Invariant: decode(encode(text)) == text for texts without unknown bytes.
    func testDecodeRoundTrips() throws {
        guard let tok = try defaultModelTokenizer() else { return }
        for c in try cases() { XCTAssertEqual(tok.decode(tok.encode(c.text)), c.text) }
        var stream = StreamingDecoder(tok)
        let text = "Xin chào 🌍 thế giới — ñandú"
        let pieces = tok.encode(text).map { stream.push($0) }
        XCTAssertEqual(pieces.joined(), text, "streamed pieces must join to the text with no broken characters")
        XCTAssertFalse(pieces.joined().contains("\u{FFFD}"))
    }

    func testPreTokenizerFamilies() {
        XCTAssertEqual(PreTokenizer(.gpt2).split("Hello world's  end\n\n x"), ["Hello", " world", "'s", " ", " end", "\n\n", " x"])
        XCTAssertEqual(PreTokenizer(.smollm).split("abc 123"), ["abc", " ", "1", "2", "3"])
        XCTAssertEqual(PreTokenizer(.llama3).split("I'M 12345 ok!!\n\nNew"), ["I", "'M", " ", "123", "45", " ok", "!!\n\n", "New"])
        XCTAssertEqual(PreTokenizer(.qwen2).split("a 42"), ["a", " ", "4", "2"])
    }

    /// Invariant: ChatML renders as SmolLM2's Jinja template does, including its default system prompt, and
    /// only assistant replies are marked as targets.
    func testChatMLRendering() throws {
        let jinja = "{% for message in messages %}{% if loop.first and messages[0]['role'] != 'system' %}{{ '<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n' }}{% endif %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
        let t = try ChatTemplate(jinja: jinja, source: "test")
        XCTAssertEqual(t.family, .chatml)
        let segments = t.render([ChatMessage(role: "user", content: "Hi"), ChatMessage(role: "assistant", content: "Hello!")],
                                addGenerationPrompt: false)
        XCTAssertEqual(segments.map(\.text).joined(),
                       "<|im_start|>system\nYou are a helpful AI assistant named SmolLM, trained by Hugging Face<|im_end|>\n<|im_start|>user\nHi<|im_end|>\n<|im_start|>assistant\nHello!<|im_end|>\n")
        XCTAssertEqual(segments.filter(\.isAssistant).map(\.text), ["Hello!<|im_end|>"])
    }

    func testTemplateFamiliesAreRecognisedAndUnknownOnesRefused() throws {
        XCTAssertEqual(try ChatTemplate(jinja: "{{ '<|start_header_id|>' + role }}", source: "t").family, .llama3)
        XCTAssertEqual(try ChatTemplate(jinja: "{{ '[INST] ' + content + ' [/INST]' }}", source: "t").family, .llama2)
        XCTAssertEqual(try ChatTemplate(jinja: "<start_of_turn>user", source: "t").family, .gemma)
        XCTAssertEqual(try ChatTemplate(jinja: "<|user|>\n{{ m }}<|end|>", source: "t").family, .phi3)
        XCTAssertEqual(try ChatTemplate(jinja: "<|user|>\n{{ m }}</s>", source: "t").family, .zephyr)
        XCTAssertThrowsError(try ChatTemplate(jinja: "{{ weird }}", source: "model.gguf")) {
            XCTAssertTrue("\($0)".contains("model.gguf") && "\($0)".contains("--chat-template"))
        }
        XCTAssertEqual(try ChatTemplate(jinja: "{{ weird }}", named: "llama3", source: "t").family, .llama3)
        XCTAssertThrowsError(try ChatTemplate(jinja: nil, named: "nope", source: "t"))
        let llama3 = ChatTemplate(family: .llama3).renderText([ChatMessage(role: "user", content: "Hi")], addGenerationPrompt: true)
        XCTAssertEqual(llama3, "<|begin_of_text|><|start_header_id|>user<|end_header_id|>\n\nHi<|eot_id|><|start_header_id|>assistant<|end_header_id|>\n\n")
    }

    /// Invariant: malformed tokenizer.json is an error naming the file, never a crash; two tokens under one id
    /// (which would silently drop one) are refused.
    func testMalformedTokenizerJSONIsRefused() throws {
        let dir = temporaryDirectory()
        for (body, fragment) in [("{not json", "malformed"), (#"{"model": {"type": "Unigram"}}"#, "model.type"),
                                 (#"{"model": {"type": "BPE", "vocab": {"a": 1}}, "pre_tokenizer": {"type": "ByteLevel"}}"#, "no token has id 0"),
                                 (#"{"model": {"type": "BPE", "vocab": {"a": 0, "b": 0, "c": 1}}}"#, "id 0 is given to both 'a' and 'b'"),
                                 (#"{"model": {"type": "BPE", "vocab": {"a": 0.5}}}"#, "model.vocab.a"),
                                 (#"{"model": {"type": "BPE", "vocab": {"a": 0}}, "added_tokens": [{"id": 0, "content": "<s>"}]}"#, "id 0 is 'a'")] {
            let path = dir + "/tokenizer.json"
            try body.write(toFile: path, atomically: true, encoding: .utf8)
            XCTAssertThrowsError(try Tokenizer(tokenizerJSON: path)) { e in
                XCTAssertTrue("\(e)".contains(path) && "\(e)".contains(fragment), "\(e)")
            }
        }
    }
}
