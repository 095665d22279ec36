// `recompute: auto` (the default): the memory estimate at start decides whether backward recomputes each layer.
import DTKernels
import DTModel
import DTParallel
import DTRuns
import DTTraining
import Foundation
import TestSupport
import XCTest

final class RecomputeChoiceTests: XCTestCase {
    /// Invariant: auto turns recomputation on exactly when keeping every layer's activations would take more than
    /// 80% of the available memory (here a stated 1 GiB) — at a length where recomputing does fit — says why with
    /// the workspace and both estimates, and stays off one step shorter, and when the available memory is unknown.
    func testAutoRecomputesOnlyWhenEveryLayersActivationsWouldNotFit() throws {
        var shape = TinyModel.Shape(); shape.layers = 4
        let model = try LlamaModel(source: ModelSource(path: TinyModel.write(shape)))
        let config = TrainConfig(), comm = WorldOfOne(), gib = Double(1 << 30)
        XCTAssertEqual(config.recompute, .auto, "auto is the default")
        func bytes(_ length: Int, recompute: Bool) -> Double {
            ForwardWorkspace.estimatedBytes(model: model, batch: 4, length: length, mode: .training(recompute: recompute))
        }
        var length = 64   // the first length (in steps of 64) whose kept activations exceed 80% of 1 GiB
        while bytes(length, recompute: false) <= 0.8 * gib { length += 64 }
        XCTAssertLessThan(bytes(length, recompute: true), 0.5 * gib, "recomputing fits there, so the choice matters")

        let on = MemoryPreflight.chooseRecompute(config, model: model, comm: comm, shape: (4, length), available: gib)
        XCTAssertTrue(on.on, on.reason)
        for part in ["4 × \(length) tokens", "of the 1.0 GiB available", "recomputing each layer in backward needs about"] {
            XCTAssertTrue(on.reason.contains(part), "lacks \(part): \(on.reason)")
        }
        let off = MemoryPreflight.chooseRecompute(config, model: model, comm: comm, shape: (4, length - 64), available: gib)
        XCTAssertFalse(off.on, off.reason)
        XCTAssertTrue(off.reason.contains("fit in the 1.0 GiB available"), off.reason)
        XCTAssertFalse(MemoryPreflight.chooseRecompute(config, model: model, comm: comm, shape: (4, length), available: nil).on)

        // DoRA's saved frozen outputs count too: at a length where LoRA's activations fit, DoRA's may not.
        var dora = config; dora.useDoRA = true
        let outputs = Double(TensorNames.Projection.allCases.reduce(0) { $0 + model.layers[0].projections[$1]!.rows })
        let tight = bytes(length - 64, recompute: false) + 0.5 * 4 * Double(4 * (length - 64)) * outputs * 4
        XCTAssertFalse(MemoryPreflight.chooseRecompute(config, model: model, comm: comm, shape: (4, length - 64), available: tight / 0.8).on)
        XCTAssertTrue(MemoryPreflight.chooseRecompute(dora, model: model, comm: comm, shape: (4, length - 64), available: tight / 0.8).on)
    }

    /// Invariant: the key reads true, false and auto as flag text and from YAML (a YAML boolean is accepted), the
    /// resolved config.yaml reads back to the same mode, and anything else is refused naming the choices.
    func testRecomputeKeyReadsBooleansAndAuto() throws {
        for (text, mode) in [("true", RecomputeMode.on), ("false", .off), ("auto", .auto)] {
            var c = TrainConfig()
            try c.set("recompute", text, source: "test")
            XCTAssertEqual(c.recompute, mode)
            XCTAssertEqual(c.recomputes, mode == .on)
        }
        for (yaml, mode) in [("recompute: true", RecomputeMode.on), ("recompute: false", .off), ("recompute: auto", .auto)] {
            var c = TrainConfig()
            try c.apply(yaml: yaml + "\n", source: "run.yaml")
            XCTAssertEqual(c.recompute, mode, yaml)
            var back = TrainConfig()
            try back.apply(yaml: c.yaml, source: "config.yaml")
            XCTAssertEqual(back.recompute, mode, "config.yaml round trip")
        }
        var c = TrainConfig()
        XCTAssertThrowsError(try c.set("recompute", "sometimes", source: "test")) { e in
            XCTAssertTrue("\(e)".contains("auto | true | false"), "\(e)")
        }
    }
}

final class AvailableMemoryTests: XCTestCase {
    /// Invariant: the memory a run may use is the least of MemAvailable and its cgroup's limit minus usage, where
    /// the cgroup is the process's own (cgroup v1 as Slurm makes per job, or v2) and its unmapped page cache (the
    /// model files it read) counts as available, since the kernel reclaims it before killing anything.
    func testCgroupLimitOfTheProcesssOwnGroupWithReclaimableCache() throws {
        let root = temporaryDirectory(), gib = 1_073_741_824.0
        func write(_ path: String, _ text: String) throws {
            try FileManager.default.createDirectory(atPath: (root + path as NSString).deletingLastPathComponent, withIntermediateDirectories: true)
            try text.write(toFile: root + path, atomically: true, encoding: .utf8)
        }
        try write("/proc/meminfo", "MemTotal:       24000000 kB\nMemAvailable:   20971520 kB\n")   // 20 GiB
        try write("/proc/self/cgroup", "9:name=systemd:/\n4:memory:/slurm/uid_0/job_7\n0::/\n")
        let job = "/sys/fs/cgroup/memory/slurm/uid_0/job_7"
        try write(job + "/memory.limit_in_bytes", "\(Int(7 * gib))\n")
        try write(job + "/memory.usage_in_bytes", "\(Int(5 * gib))\n")
        try write(job + "/memory.stat", "cache 1\ntotal_inactive_file \(Int(0.5 * gib))\ntotal_active_file \(Int(2 * gib))\ntotal_mapped_file \(Int(0.5 * gib))\n")
        var found = try XCTUnwrap(MemoryPreflight.available(root: root))
        XCTAssertEqual(found.bytes / gib, 7 - 5 + 2, accuracy: 1e-9, "limit − usage + unmapped file cache")
        XCTAssertEqual(found.source, "cgroup memory.limit_in_bytes")
        try write(job + "/memory.limit_in_bytes", "9223372036854771712\n")   // no limit: MemAvailable decides
        found = try XCTUnwrap(MemoryPreflight.available(root: root))
        XCTAssertEqual(found.bytes / gib, 20, accuracy: 1e-9)
        XCTAssertEqual(found.source, "MemAvailable")
        // cgroup v2: memory.max and memory.current of the unified group, less its unmapped file cache.
        try write("/proc/self/cgroup", "0::/job8\n")
        try write("/sys/fs/cgroup/job8/memory.max", "\(Int(6 * gib))\n")
        try write("/sys/fs/cgroup/job8/memory.current", "\(Int(5 * gib))\n")
        try write("/sys/fs/cgroup/job8/memory.stat", "anon 1\nfile \(Int(3 * gib))\nfile_mapped \(Int(1 * gib))\n")
        found = try XCTUnwrap(MemoryPreflight.available(root: root))
        XCTAssertEqual(found.bytes / gib, 6 - 5 + 2, accuracy: 1e-9)
        XCTAssertEqual(found.source, "cgroup memory.max")
    }
}
