// The MPI communicator (OpenMPI). The only file that imports CMPI. Counts are split into chunks of at
// most 2³⁰ elements so no MPI count overflows Int32 on large buffers.
import CMPI
import Foundation

public final class MPICommunicator: Communicator {
    public let rank: Int
    public let size: Int
    public let localSize: Int
    private let comm: MPI_Comm
    static let chunk = 1 << 30

    private init(comm: MPI_Comm) {
        self.comm = comm
        var r: Int32 = 0, s: Int32 = 0
        MPI_Comm_rank(comm, &r)
        MPI_Comm_size(comm, &s)
        rank = Int(r); size = Int(s)
        localSize = ProcessInfo.processInfo.environment["OMPI_COMM_WORLD_LOCAL_SIZE"].flatMap(Int.init)
            ?? ProcessInfo.processInfo.environment["SLURM_NTASKS_PER_NODE"].flatMap(Int.init) ?? s.asInt
    }

    static func start() -> MPICommunicator {
        var provided: Int32 = 0
        MPI_Init_thread(nil, nil, Int32(MPI_THREAD_FUNNELED), &provided)
        let world = dt_mpi_comm_world()!
        MPI_Comm_set_errhandler(world, dt_mpi_errors_are_fatal())
        let c = MPICommunicator(comm: world)
        atexit { var done: Int32 = 0; MPI_Finalized(&done); if done == 0 { MPI_Finalize() } }
        return c
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
        var offset = 0
        while offset < buffer.count {
            let n = min(Self.chunk, buffer.count - offset)
            MPI_Allreduce(dt_mpi_in_place(), buffer.baseAddress! + offset, Int32(n), dt_mpi_float(), dt_mpi_sum(), comm)
            offset += n
        }
    }

    public func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) {
        var offset = 0
        while offset < buffer.count {
            let n = min(Self.chunk, buffer.count - offset)
            MPI_Allreduce(dt_mpi_in_place(), buffer.baseAddress! + offset, Int32(n), dt_mpi_double(), dt_mpi_sum(), comm)
            offset += n
        }
    }

    public func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) {
        precondition(receive.count == send.count * size)
        if send.count <= Self.chunk {
            MPI_Allgather(send.baseAddress, Int32(send.count), dt_mpi_byte(), receive.baseAddress, Int32(send.count), dt_mpi_byte(), comm)
            return
        }
        // Blocks over 2³⁰ bytes: one broadcast per rank (each itself chunked).
        for root in 0..<size {
            let dst = UnsafeMutableRawBufferPointer(rebasing: receive[(root * send.count)..<((root + 1) * send.count)])
            if root == rank { dst.copyMemory(from: send) }
            broadcast(dst, root: root)
        }
    }

    public func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {
        var offset = 0
        while offset < buffer.count {
            let n = min(Self.chunk, buffer.count - offset)
            MPI_Bcast(buffer.baseAddress! + offset, Int32(n), dt_mpi_byte(), Int32(root), comm)
            offset += n
        }
    }

    public func barrier() { MPI_Barrier(comm) }

    public func abort(_ message: String, code: Int32) -> Never {
        StopSignals.standardError(message + "\n")
        MPI_Abort(comm, code)
        exit(code)
    }
}

private extension Int32 { var asInt: Int { Int(self) } }
