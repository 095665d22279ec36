// Graceful stop on SIGTERM and SIGUSR1 (Slurm's --signal, preemption, scancel; mpirun forwards both to every
// rank). The handler only records the signal; the training loop puts "a signal arrived here" into the step's
// one fused all-reduce, so every rank learns of a signal that reached any rank at the same step, finishes it,
// rank 0 writes a checkpoint and all ranks exit with `exitStatus`. Repeated signals change nothing (one signal
// often arrives by several paths: Slurm signals the tasks and the launcher forwards it too); SIGKILL ends a rank
// at once.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

/// The signal received (0: none). Written only by the handler; a plain word is all a signal handler may touch.
nonisolated(unsafe) private var receivedSignal: Int32 = 0

public enum StopSignals {
    /// Exit status of a run stopped by a signal after its checkpoint (sysexits EX_TEMPFAIL: "try again";
    /// launch/slurm.sbatch requeues the job on it).
    public static let exitStatus: Int32 = 75
    public static let handled: [Int32] = [SIGTERM, SIGUSR1]

    /// Installs the handlers (for the training loop; other commands keep the default: a signal ends them).
    /// SIGPIPE is ignored meanwhile: a launcher that is shutting down closes the ranks' output first, and losing
    /// a progress line must not kill a rank before its checkpoint (`standardError` drops what it cannot write).
    public static func install() {
        receivedSignal = 0
        signal(SIGPIPE, SIG_IGN)
        for s in handled {
            var action = sigaction()
            action.__sigaction_handler.sa_handler = { sig in receivedSignal = sig }
            sigemptyset(&action.sa_mask)
            action.sa_flags = SA_RESTART
            sigaction(s, &action, nil)
        }
    }

    /// Restores the default action.
    public static func uninstall() {
        for s in handled + [SIGPIPE] { signal(s, SIG_DFL) }
    }

    /// Writes `text` to standard error; a closed or broken stream loses the text instead of trapping (as
    /// FileHandle.write does).
    public static func standardError(_ text: String) {
        Array(text.utf8).withUnsafeBytes { bytes in
            var offset = 0
            while offset < bytes.count {
                let n = write(2, bytes.baseAddress! + offset, bytes.count - offset)
                if n > 0 { offset += n } else if n < 0 && errno == EINTR { continue } else { return }
            }
        }
    }

    /// Ends the process with `exitStatus`: `exit` (which finalizes MPI) when the launcher is still serving the
    /// job (SIGUSR1), `_exit` after `seconds` when finalizing cannot complete because the launcher is already
    /// tearing the job down (SIGTERM to mpirun: its daemons stop answering MPI_Finalize's fence, and SIGKILL
    /// follows `odls_base_sigkill_timeout` seconds after the SIGTERM). The checkpoint is on disk before this.
    public static func exitAfterStop(finalizeWithin seconds: Double = 1) -> Never {
        let deadline = Thread { Thread.sleep(forTimeInterval: seconds); _exit(exitStatus) }
        deadline.start()
        exit(exitStatus)
    }

    /// The signal this process received since `install` (0: none).
    public static var received: Int32 { receivedSignal }
}

/// Thrown by the training loop after the checkpoint of a run stopped by a signal; `Runtime.run` ends every rank
/// with `StopSignals.exitStatus`.
public struct StoppedBySignal: Error, CustomStringConvertible {
    public var step: Int, totalSteps: Int, ranks: Int, checkpoint: String
    public init(step: Int, totalSteps: Int, ranks: Int, checkpoint: String) {
        self.step = step; self.totalSteps = totalSteps; self.ranks = ranks; self.checkpoint = checkpoint
    }
    public var description: String {
        "stopped by a signal (SIGTERM or SIGUSR1, received by \(ranks) rank(s)) after step \(step)/\(totalSteps); checkpoint \(checkpoint) written; "
            + "exit status \(StopSignals.exitStatus); continue with --resume auto"
    }
}
