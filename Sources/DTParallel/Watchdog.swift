// The stalled-rank watchdog. A rank that stops making progress (SIGSTOP, a hung node, a stuck file system)
// leaves the others waiting in a collective forever; MPI has no timeout for that, and a blocked collective
// cannot be used to ask who is missing. So each rank runs a thread that
//   - every second writes a heartbeat file OUTPUT/.heartbeat/rank-R ("completed entered unix-time host pid"):
//     the last step it completed, the step whose gradient all-reduce it entered, and when it last wrote;
//   - when no step has completed on this rank for longer than max(min_seconds, factor × median step time)
//     (armed after the first completed step; paused while this rank evaluates or writes a checkpoint), reads
//     every rank's heartbeat and ends the job with MPI_Abort (status `exitStatus`), naming the stalled ranks:
//     those whose heartbeat is stale (a stopped process writes nothing, its threads included) or, if none is,
//     those that have not entered the step the others are waiting in.
// Heartbeats go through the run directory, so naming a rank on another node needs a shared file system (as
// checkpoints on a cluster usually are); without one the job still aborts, naming the ranks it cannot see.
import Foundation

public final class Watchdog {
    /// Exit status of a job ended by the watchdog (as timeout(1)).
    public static let exitStatus: Int32 = 124

    public let factor: Double, minimumSeconds: Double
    let comm: Communicator
    let directory: String
    let interval: Double
    private let lock = NSLock()
    private var completed = 0, entered = 0
    private var lastProgress = Date()
    private var durations: [Double] = []
    private var pausedSince: Date?
    private var running = true
    private var thread: Thread?

    /// `factor` 0 disables it (nothing is started). On a world of one there is nobody to wait for: also off.
    public init?(comm: Communicator, output: String, factor: Double, minimumSeconds: Double, interval: Double = 1) {
        guard factor > 0, comm.size > 1 else { return nil }
        self.comm = comm; self.factor = factor; self.minimumSeconds = minimumSeconds; self.interval = interval
        directory = (output as NSString).appendingPathComponent(".heartbeat")
    }

    /// Starts the thread; `step` is the number of steps already done (a resumed run).
    public func start(step: Int) {
        lock.withLock { completed = step; entered = step; lastProgress = Date() }
        try? FileManager.default.createDirectory(atPath: directory, withIntermediateDirectories: true)
        let t = Thread { [self] in loop() }
        t.name = "dtrain-watchdog"
        thread = t
        t.start()
    }

    public func stop() {
        lock.withLock { running = false }
        try? FileManager.default.removeItem(atPath: path(comm.rank))
    }

    /// This rank is about to enter the gradient all-reduce of step `step` (0-based).
    public func entering(_ step: Int) { lock.withLock { entered = step + 1 } }

    /// This rank completed `step` steps; the last took `seconds`.
    public func completed(_ step: Int, seconds: Double) {
        lock.withLock {
            completed = step; lastProgress = Date()
            durations.append(seconds)
            if durations.count > 101 { durations.removeFirst() }
        }
    }

    /// Evaluation and checkpoint writing are not steps: the time they take does not count.
    public func pause() { lock.withLock { pausedSince = Date() } }
    public func resume() {
        lock.withLock {
            if let p = pausedSince { lastProgress = lastProgress.addingTimeInterval(Date().timeIntervalSince(p)) }
            pausedSince = nil
        }
    }

    /// max(minimum, factor × median step time), or nil before the first completed step.
    func limit() -> (seconds: Double, median: Double)? {
        guard !durations.isEmpty else { return nil }
        let sorted = durations.sorted(), median = sorted[sorted.count / 2]
        return (max(minimumSeconds, factor * median), median)
    }

    func path(_ rank: Int) -> String { (directory as NSString).appendingPathComponent("rank-\(rank)") }

    private func loop() {
        let host = ProcessInfo.processInfo.hostName, pid = getpid()
        while true {
            let (alive, done, into, quiet, limit, paused) = lock.withLock {
                (running, completed, entered, Date().timeIntervalSince(lastProgress), self.limit(), pausedSince != nil)
            }
            guard alive else { return }
            let line = "\(done) \(into) \(Date().timeIntervalSince1970) \(host) \(pid)\n"
            let temporary = path(comm.rank) + ".tmp"
            if (try? line.write(toFile: temporary, atomically: false, encoding: .utf8)) != nil { rename(temporary, path(comm.rank)) }
            if !paused, let limit, quiet > limit.seconds { fire(quiet: quiet, limit: limit) }
            Thread.sleep(forTimeInterval: interval)
        }
    }

    struct Heartbeat { var completed: Int, entered: Int, age: Double, host: String, pid: String }

    func heartbeats() -> [Heartbeat?] {
        let now = Date().timeIntervalSince1970
        return (0..<comm.size).map { r in
            guard let text = try? String(contentsOfFile: path(r), encoding: .utf8) else { return nil }
            let f = text.split(separator: " ").map { $0.trimmingCharacters(in: .whitespacesAndNewlines) }
            guard f.count == 5, let c = Int(f[0]), let e = Int(f[1]), let t = Double(f[2]) else { return nil }
            return Heartbeat(completed: c, entered: e, age: now - t, host: f[3], pid: f[4])
        }
    }

    /// The ranks that stopped making progress (see the file header), with what is known of each.
    func stalled(_ beats: [Heartbeat?], quiet: Double) -> [(rank: Int, why: String)] {
        // A live rank rewrites its heartbeat every `interval`; a stalled one stopped about when progress did.
        let staleAfter = max(3 * interval, quiet / 2)
        var out: [(Int, String)] = []
        for (r, b) in beats.enumerated() {
            guard let b else { out.append((r, "no heartbeat file in \(directory) (is the run directory on a shared file system?)")); continue }
            if b.age > staleAfter {
                out.append((r, "host \(b.host), pid \(b.pid): no heartbeat for \(Int(b.age)) s (stopped or hung), last completed step \(b.completed)"))
            }
        }
        if out.isEmpty {
            let waitingIn = beats.compactMap { $0?.entered }.max() ?? 0
            for (r, b) in beats.enumerated() where b!.entered < waitingIn {
                out.append((r, "host \(b!.host), pid \(b!.pid): alive but has not reached step \(waitingIn)'s all-reduce (last completed step \(b!.completed))"))
            }
        }
        return out
    }

    private func fire(quiet: Double, limit: (seconds: Double, median: Double)) {
        let beats = heartbeats()
        let stalled = stalled(beats, quiet: quiet)
        // One message: a rank defers to a lower-numbered rank that is not stalled itself.
        let stalledRanks = Set(stalled.map(\.rank))
        if (0..<comm.rank).contains(where: { !stalledRanks.contains($0) }) { Thread.sleep(forTimeInterval: 5) }
        let who = stalled.isEmpty ? "no rank could be named (every heartbeat is fresh and at the same step)"
            : stalled.map { "rank \($0.rank) (\($0.why))" }.joined(separator: "; ")
        let message = "watchdog (rank \(comm.rank) of \(comm.size)): no step completed for \(Int(quiet)) s (limit \(Int(limit.seconds.rounded(.up))) s = "
            + "max(watchdog_min_seconds \(minimumSeconds), watchdog_factor \(factor) × median step \(String(format: "%.3f", limit.median)) s)); "
            + "stalled: \(who); aborting the job"
        comm.abort(message, code: Self.exitStatus)
    }
}
