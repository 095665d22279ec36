// A real multi-host run: two network namespaces (separate network stacks, own addresses and hostnames) joined
// by a bridge; mpirun starts 2 ranks in each through an rsh agent that enters the namespace, and the ranks
// talk TCP only (btl tcp,self). The adapter must equal a one-host run's. Needs root and iproute2.
import Foundation
import TestSupport
import XCTest

final class MultiHostTests: XCTestCase {
    func shell(_ command: String) throws -> (Int32, String) { try Shell.run(command) }

    func testTrainingAcrossTwoHostsMatchesOneHost() throws {
        guard getuid() == 0 else {
            if ProcessInfo.processInfo.environment["CI"] != nil { XCTFail("the multi-host test needs root in CI") }
            return
        }
        let hosts = TestPaths.repoRoot + "/launch/netns-hosts.sh"
        let (status, out) = try shell("bash \(hosts) up 2")
        XCTAssertEqual(status, 0, out)
        defer { _ = try? shell("bash \(hosts) down") }

        let dir = TinyModel.writeWithTokenizer(seed: 6)
        let lines = (0..<16).map { i in #"{"text": "the sun and the rain \#(i) then an ant \#(i * 7 % 5)"}"# }
        try lines.joined(separator: "\n").write(toFile: dir + "/train.jsonl", atomically: true, encoding: .utf8)
        func args(_ output: String) -> [String] {
            ["train", "--model", dir, "--data", dir + "/train.jsonl", "--output", output, "--max-steps", "5", "--batch-size", "8",
             "--micro-batch-size", "2", "--learning-rate", "0.01", "--lora-rank", "4", "--threads", "1", "--compute", "fp32"]   // exact path
        }
        let single = temporaryDirectory(), multi = temporaryDirectory()
        let one = try DTrainProcess.run(args(single))
        XCTAssertEqual(one.status, 0, one.stderr)

        let agent = TestPaths.repoRoot + "/launch/netns-agent.sh"
        let mpirun = ["mpirun", "--host", "10.77.0.1:2,10.77.0.2:2", "-np", "4", "--bind-to", "none",
                      "--mca", "plm_rsh_agent", agent, "--mca", "oob_tcp_if_include", "10.77.0.0/24",
                      "--mca", "btl_tcp_if_include", "10.77.0.0/24", "--mca", "btl", "tcp,self",
                      "-x", "OMPI_ALLOW_RUN_AS_ROOT", "-x", "OMPI_ALLOW_RUN_AS_ROOT_CONFIRM",
                      DTrainProcess.binary] + args(multi)
        let (code, log) = try shell("OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 timeout 300 " + mpirun.map { "'\($0)'" }.joined(separator: " "))
        XCTAssertEqual(code, 0, log)
        XCTAssertTrue(log.contains("4 rank(s)"), log)
        let d = relativeDifference(try adapterValues(single + "/final"), try adapterValues(multi + "/final"))
        XCTAssertLessThanOrEqual(d, 1e-4, "adapter across two hosts vs one host")
    }
}
