// The launch scripts: syntax (bash -n, and shellcheck when installed), and the Slurm script's launch line
// exercised with a fake SLURM_* environment on localhost (it falls back to mpirun without srun).
import Foundation
import TestSupport
import XCTest

final class LaunchScriptTests: XCTestCase {
    func run(_ command: String, env: [String: String] = [:]) throws -> (Int32, String) {
        try Shell.run(command, environment: env, directory: TestPaths.repoRoot)
    }

    let scripts = ["launch/setup.sh", "launch/test.sh", "launch/main-job.sh", "launch/mpirun.sh", "launch/dev.sh",
                   "launch/slurm.sbatch", "launch/netns-hosts.sh", "launch/netns-agent.sh", ".ci/run"]

    func testScriptsParseAndAreShellcheckClean() throws {
        for s in scripts {
            let (code, out) = try run("bash -n \(s)")
            XCTAssertEqual(code, 0, "\(s): \(out)")
        }
        if FileManager.default.fileExists(atPath: "/usr/bin/shellcheck") {
            let (code, out) = try run("shellcheck " + scripts.joined(separator: " "))
            XCTAssertEqual(code, 0, out)
        } else if ProcessInfo.processInfo.environment["CI"] != nil {
            XCTFail("shellcheck is not installed (launch/test.sh installs it)")
        }
    }

    /// Invariant: under a (fake) Slurm allocation of 2 tasks × 1 CPU the batch script starts 2 ranks with
    /// 1 BLAS thread each and trains to completion.
    func testSlurmScriptRunsWithFakeAllocation() throws {
        let dir = TinyModel.writeWithTokenizer(seed: 2)
        try (0..<8).map { #"{"text": "rain and sun \#($0)"}"# }.joined(separator: "\n").write(toFile: dir + "/d.jsonl", atomically: true, encoding: .utf8)
        let config = dir + "/run.yaml"
        try "model: \(dir)\ndata: \(dir)/d.jsonl\noutput: \(dir)/run\nmax_steps: 2\nbatch_size: 4\nmicro_batch_size: 2\n"
            .write(toFile: config, atomically: true, encoding: .utf8)
        let (code, out) = try run("bash launch/slurm.sbatch \(config)", env: [
            "SLURM_JOB_ID": "4242", "SLURM_NTASKS": "2", "SLURM_CPUS_PER_TASK": "1", "SLURM_JOB_NODELIST": "localhost",
            "SLURM_SUBMIT_DIR": TestPaths.repoRoot, "DTRAIN_LAUNCHER": "mpirun",
            "OMPI_ALLOW_RUN_AS_ROOT": "1", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM": "1"])
        XCTAssertEqual(code, 0, out)
        XCTAssertTrue(out.contains("job 4242") && out.contains("2 ranks × 1 threads"), out)
        XCTAssertTrue(out.contains("on 2 rank(s) × 1 BLAS threads"), out)
        XCTAssertTrue(FileManager.default.fileExists(atPath: dir + "/run/final/adapter_model.safetensors"))
    }
}
