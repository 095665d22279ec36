// `dtrain export` / `dtrain merge` / `train --init-adapter` through the binary: the routes out (GGUF,
// PEFT, Ollama), adapters back in, and clear refusals that leave nothing half-written.
import Foundation
import TestSupport
import XCTest

final class ExportCommandTests: XCTestCase {
    var adapter: String { TestPaths.repoRoot + "/Tests/DTCommandsTests/Fixtures/llamacpp/adapters/qv_r8" }

    func requireModel() throws -> Bool {
        if TestPaths.defaultModel != nil { return true }
        if TestPaths.modelRequired { XCTFail("default model missing") }
        return false
    }

    func entries(_ dir: String) -> [String] { ((try? FileManager.default.contentsOfDirectory(atPath: dir)) ?? []).sorted() }

    /// Invariant: every bad request is a clear error naming the file or flag and what was expected, exits 1
    /// (or 64 for a usage error), and writes nothing — no output, no temporary sibling.
    func testBadRequestsAreRefusedAndWriteNothing() throws {
        guard try requireModel() else { return }
        let dir = temporaryDirectory()
        let existing = dir + "/existing.gguf"
        try Data("keep me".utf8).write(to: URL(fileURLWithPath: existing))
        let model = try XCTUnwrap(TestPaths.defaultModel)
        let tiny = TinyModel.write()
        let cases: [([String], [String])] = [
            (["export", "--adapter", adapter, "--format", "onnx", "-o", dir + "/x"], ["--format", "gguf, peft or ollama"]),
            (["export", "--adapter", adapter, "--format", "gguf", "--outtype", "q4_k", "-o", dir + "/x.gguf"], ["--outtype", "q8_0"]),
            (["merge", "--adapter", adapter, "--format", "hf", "--outtype", "q4_0", "-o", dir + "/x"], ["GGUF block type"]),
            (["merge", "--adapter", adapter, "--format", "gguf", "--outtype", "q3", "-o", dir + "/x.gguf"], ["--outtype", "same"]),
            (["export", "--adapter", adapter, "--format", "gguf", "-o", existing], [existing, "already exists", "--force"]),
            (["merge", "--adapter", adapter, "--format", "gguf", "-o", existing], [existing, "already exists", "--force"]),
            (["export", "--adapter", model, "--format", "peft", "-o", dir + "/x"], [model, "general.type", "\"adapter\""]),
            (["merge", "--adapter", adapter, "--model", tiny, "--format", "hf", "-o", dir + "/x"], ["adapter_model.safetensors", "but the base model has 2 layers"]),
            (["merge", "--adapter", adapter, "--model", tiny, "--format", "gguf", "-o", dir + "/x.gguf"], ["adapter_model.safetensors"]),
            (["export", "--adapter", dir + "/missing", "--format", "gguf", "-o", dir + "/x.gguf"], ["adapter_config.json", "missing"]),
            (["export", "--adapter", adapter, "--format", "gguf", "-o", "/proc/version/x.gguf"], ["/proc/version/x.gguf"]),
            (["export", "--adapter", adapter, "--format", "ollama", "--model", tiny, "-o", dir + "/o"], ["ollama", "GGUF base"]),
        ]
        for (args, fragments) in cases {
            let r = try DTrainProcess.run(args)
            XCTAssertTrue(r.status == 1 || r.status == 64, "\(args): status \(r.status)\n\(r.stderr)")
            for f in fragments { XCTAssertTrue(r.stderr.contains(f), "\(args): stderr lacks '\(f)':\n\(r.stderr)") }
        }
        XCTAssertEqual(entries(dir), ["existing.gguf"], "nothing else was written, no temporary left")
        XCTAssertEqual(try String(contentsOfFile: existing, encoding: .utf8), "keep me", "the existing output is untouched")
    }

    /// Invariant: a merge that fails half-way (the file-size limit is hit while writing a shard) reports the
    /// error and leaves neither a partial output nor a temporary directory.
    func testFailedMergeLeavesNothing() throws {
        guard try requireModel() else { return }
        let dir = temporaryDirectory()
        let (status, output) = try Shell.run("ulimit -f 20000; exec \(DTrainProcess.binary) merge --adapter \(adapter) --format hf -o \(dir)/merged")
        XCTAssertEqual(status, 1, output)
        XCTAssertTrue(output.contains("File too large") && output.contains("\(dir)/merged"), output)
        XCTAssertEqual(entries(dir), [], "no output and no temporary sibling")
    }

    /// Invariant: a GGUF adapter is taken wherever an adapter is (eval, generate, export --format peft,
    /// train --init-adapter) and means the same as the PEFT directory it came from; --init-adapter with a
    /// negligible learning rate (1e-12) hands back the starting adapter's NLL; GGUF metadata names rank, targets, steps.
    func testGGUFAdapterRoundTripsThroughEveryCommand() throws {
        guard try requireModel() else { return }
        let dir = temporaryDirectory()
        let gguf = dir + "/a.gguf"
        let r = try DTrainProcess.run(["export", "--adapter", adapter, "--format", "gguf", "-o", gguf])
        XCTAssertEqual(r.status, 0, r.stderr)
        XCTAssertTrue(r.stdout.contains("r=8") && r.stdout.contains("q_proj,v_proj"), r.stdout)
        let inspect = try DTrainProcess.run(["inspect", gguf])
        for key in ["dtrain.lora.rank", "dtrain.lora.target_modules", "dtrain.training.steps", "general.base_model.0.name"] {
            XCTAssertTrue(inspect.stdout.contains(key) || inspect.stderr.contains(key), "inspect lacks \(key):\n\(inspect.stdout)\(inspect.stderr)")
        }
        // generate: the same greedy text through either form.
        let prompt = ["generate", "-p", "What is 9 times 8?", "--max-tokens", "16", "--compute", "fp32"]
        let viaPEFT = try DTrainProcess.run(prompt + ["--adapter", adapter]), viaGGUF = try DTrainProcess.run(prompt + ["--adapter", gguf])
        XCTAssertEqual(viaPEFT.status, 0, viaPEFT.stderr)
        XCTAssertEqual(viaGGUF.stdout, viaPEFT.stdout)
        // export --format peft from the GGUF: the same tensors (the fixture's F16 values are exact in f32).
        let back = dir + "/peft"
        XCTAssertEqual(try DTrainProcess.run(["export", "--adapter", gguf, "--format", "peft", "-o", back]).status, 0)
        let config = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: back + "/adapter_config.json"))) as? [String: Any])
        XCTAssertEqual(config["r"] as? Int, 8)
        XCTAssertEqual(Set(config["target_modules"] as? [String] ?? []), ["q_proj", "v_proj"])
        // train --init-adapter with a negligible learning rate: the final adapter means what the starting one does.
        let run = dir + "/run"
        let t = try DTrainProcess.run(["train", "--data", TestPaths.repoRoot + "/data/instruct/valid.jsonl", "--init-adapter", gguf,
                                       "--learning-rate", "1e-12", "--max-steps", "1", "--batch-size", "2", "--micro-batch-size", "2",
                                       "--max-length", "64", "--output", run, "--tensorboard", "false"])
        XCTAssertEqual(t.status, 0, t.stderr)
        XCTAssertTrue(t.stderr.contains("starting from \(gguf)"), t.stderr)
        XCTAssertTrue(t.stderr.contains("lora_rank: 8") && t.stderr.contains("lora_targets: [q_proj, v_proj]"), "the adapter's rank and targets are used")
        let evalArgs = ["eval", "--data", TestPaths.repoRoot + "/Tests/DTCommandsTests/Fixtures/llamacpp/eval.txt", "--context", "64", "--json", "--compute", "fp32"]
        let a = try DTrainProcess.run(evalArgs + ["--adapter", gguf]), b = try DTrainProcess.run(evalArgs + ["--adapter", run + "/final"])
        XCTAssertEqual(a.status, 0, a.stderr)
        func nll(_ s: String) throws -> Double {
            try XCTUnwrap((try JSONSerialization.jsonObject(with: Data(s.utf8)) as? [String: Any])?["mean_nll"] as? Double, s)
        }
        XCTAssertEqual(try nll(a.stdout), try nll(b.stdout), accuracy: 1e-6, "eval through the GGUF adapter and through the init-adapter run's final adapter")
        // merge --adapter FILE.gguf: the merged model means base + adapter.
        let merged = dir + "/merged.gguf"
        let m = try DTrainProcess.run(["merge", "--adapter", gguf, "--format", "gguf", "--outtype", "f32", "-o", merged])
        XCTAssertEqual(m.status, 0, m.stderr)
        let c = try DTrainProcess.run(evalArgs + ["--model", merged])
        XCTAssertEqual(try nll(c.stdout), try nll(a.stdout), accuracy: 1e-4, "merged from the GGUF adapter vs base + GGUF adapter")
    }

    /// Invariant: `export --format ollama` writes a Modelfile whose FROM is the base GGUF, whose ADAPTER is a
    /// loadable GGUF adapter beside it, with the model's chat template as a Go template, its default system
    /// prompt and stop marker.
    func testOllamaModelfile() throws {
        guard try requireModel() else { return }
        let out = temporaryDirectory() + "/ollama"
        let r = try DTrainProcess.run(["export", "--adapter", adapter, "--format", "ollama", "-o", out])
        XCTAssertEqual(r.status, 0, r.stderr)
        let modelfile = try String(contentsOfFile: out + "/Modelfile", encoding: .utf8)
        XCTAssertTrue(modelfile.contains("FROM \(try XCTUnwrap(TestPaths.defaultModel))\n"), modelfile)
        XCTAssertTrue(modelfile.contains("ADAPTER ./adapter.gguf\n"), modelfile)
        XCTAssertTrue(modelfile.contains("TEMPLATE \"\"\"{{- if .System }}<|im_start|>system\n{{ .System }}<|im_end|>"), modelfile)
        XCTAssertTrue(modelfile.contains("SYSTEM \"\"\"You are a helpful AI assistant named SmolLM"), modelfile)
        XCTAssertTrue(modelfile.contains("PARAMETER stop \"<|im_end|>\""), modelfile)
        let e = try DTrainProcess.run(["eval", "--data", TestPaths.repoRoot + "/Tests/DTCommandsTests/Fixtures/llamacpp/eval.txt", "--context", "64", "--adapter", out + "/adapter.gguf"])
        XCTAssertEqual(e.status, 0, e.stderr)
    }

    /// Invariant: an HF directory saved as transformers 5 saves it (chat template in chat_template.jinja) has
    /// its chat template recognised.
    func testChatTemplateJinjaIsRead() throws {
        let dir = TinyModel.writeWithTokenizer()
        let before = try DTrainProcess.run(["inspect", dir])
        XCTAssertTrue(before.stdout.contains("chat template: chatml"), before.stdout)
        let config = dir + "/tokenizer_config.json"
        var json = try XCTUnwrap(try JSONSerialization.jsonObject(with: Data(contentsOf: URL(fileURLWithPath: config))) as? [String: Any])
        json.removeValue(forKey: "chat_template")
        try JSONSerialization.data(withJSONObject: json).write(to: URL(fileURLWithPath: config))
        XCTAssertTrue(try DTrainProcess.run(["inspect", dir]).stdout.contains("chat template: none"))
        try "{% for m in messages %}<|user|>\n{{ m['content'] }}<|end|>\n{% endfor %}<|assistant|>\n".write(toFile: dir + "/chat_template.jinja", atomically: true, encoding: .utf8)
        let after = try DTrainProcess.run(["inspect", dir])
        XCTAssertTrue(after.stdout.contains("chat template: phi3"), after.stdout)
    }
}
