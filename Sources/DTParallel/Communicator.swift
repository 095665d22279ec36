// The parallel runtime seen by the rest of dtrain: a communicator over N ranks. A plain `dtrain` run is a
// world of one (no MPI calls at all); under mpirun or srun the MPI implementation is used.
import Foundation

public protocol Communicator: AnyObject {
    var rank: Int { get }
    var size: Int { get }
    /// Ranks on this node (for thread counts).
    var localSize: Int { get }
    /// Element-wise sum across ranks, in place.
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>)
    func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>)
    /// Every rank receives the concatenation of all ranks' equally sized byte blocks, in rank order.
    func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer)
    /// Rank `root`'s bytes are copied to every rank; the length must already agree.
    func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int)
    func barrier()
    /// Ends every rank of the job now, after printing `message` on this rank's stderr.
    func abort(_ message: String, code: Int32) -> Never
}

extension Communicator {
    public var isRoot: Bool { rank == 0 }

    public func allReduceSum(_ values: [Double]) -> [Double] {
        var v = values
        v.withUnsafeMutableBufferPointer { allReduceSum($0) }
        return v
    }

    /// Broadcast of a byte array of any length from `root`.
    public func broadcast(_ bytes: [UInt8], root: Int = 0) -> [UInt8] {
        var count = [Double(bytes.count)]
        if rank != root { count[0] = 0 }
        count = allReduceSum(count)
        var out = rank == root ? bytes : [UInt8](repeating: 0, count: Int(count[0]))
        out.withUnsafeMutableBytes { broadcast($0, root: root) }
        return out
    }

    /// Runs `body`; if it throws on any rank, that rank aborts the whole job with the error's message.
    public func abortOnError<T>(_ body: () throws -> T) -> T {
        do { return try body() } catch {
            abort("dtrain: error on rank \(rank) of \(size): \(error)", code: 1)
        }
    }
}

/// A single process: collectives are identities.
public final class WorldOfOne: Communicator {
    public init() {}
    public var rank: Int { 0 }
    public var size: Int { 1 }
    public var localSize: Int { 1 }
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {}
    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) {}
    public func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) {
        precondition(send.count == receive.count)
        receive.copyMemory(from: send)
    }
    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {}
    public func barrier() {}
    public func abort(_ message: String, code: Int32) -> Never {
        StopSignals.standardError(message + "\n")
        exit(code)
    }
}

public enum Launcher {
    /// True when started by mpirun/srun with more than a singleton world (OpenMPI, PMIx or Slurm variables).
    public static var isUnderMPI: Bool {
        let env = ProcessInfo.processInfo.environment
        return env["OMPI_COMM_WORLD_SIZE"] != nil || env["PMIX_RANK"] != nil || env["PMI_RANK"] != nil
    }

    /// The communicator for this process: MPI under a launcher, else a world of one.
    public static func communicator() -> Communicator {
        isUnderMPI ? MPICommunicator.start() : WorldOfOne()
    }

    /// BLAS threads per rank so that ranks on this node × threads = cores (an explicit
    /// OPENBLAS_NUM_THREADS / DTRAIN_THREADS wins).
    public static func threadsPerRank(localRanks: Int) -> Int {
        let env = ProcessInfo.processInfo.environment
        if let t = env["DTRAIN_THREADS"].flatMap(Int.init), t > 0 { return t }
        if let t = env["OPENBLAS_NUM_THREADS"].flatMap(Int.init), t > 0 { return t }
        if let t = env["SLURM_CPUS_PER_TASK"].flatMap(Int.init), t > 0 { return t }
        return max(1, ProcessInfo.processInfo.activeProcessorCount / max(1, localRanks))
    }
}
