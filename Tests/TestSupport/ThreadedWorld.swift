// N ranks as N threads of one process, for tests of collective code (a sharded base's loading and gathers)
// without mpirun: every collective meets at a barrier, reads what the others published, and meets again.
import DTParallel
import Foundation

public final class ThreadedWorld {
    public let size: Int
    private let condition = NSCondition()
    private var arrived = 0, generation = 0
    private var published: [UnsafeRawBufferPointer?]
    private var publishedFloats: [UnsafeMutableBufferPointer<Float>?]
    private var publishedDoubles: [UnsafeMutableBufferPointer<Double>?]

    public init(size: Int) {
        self.size = size
        published = Array(repeating: nil, count: size)
        publishedFloats = Array(repeating: nil, count: size)
        publishedDoubles = Array(repeating: nil, count: size)
    }

    /// Runs body(rank's communicator) on `size` threads (8 MiB stacks) and waits for all; results in rank order.
    public func run<T>(_ body: @escaping (Communicator) throws -> T) throws -> [T] {
        let box = ResultsBox<T>(count: size)
        let done = DispatchSemaphore(value: 0)
        for r in 0..<size {
            let thread = Thread { [self] in
                box.results[r] = Result { try body(Rank(rank: r, world: self)) }
                done.signal()
            }
            thread.stackSize = 8 << 20
            thread.start()
        }
        for _ in 0..<size { done.wait() }
        return try box.results.map { try $0!.get() }
    }

    private final class ResultsBox<T>: @unchecked Sendable {   // each thread writes only its own slot
        var results: [Result<T, Error>?]
        init(count: Int) { results = Array(repeating: nil, count: count) }
    }

    fileprivate func barrier() {
        condition.lock()
        let mine = generation
        arrived += 1
        if arrived == size {
            arrived = 0; generation += 1
            condition.broadcast()
        } else {
            while generation == mine { condition.wait() }
        }
        condition.unlock()
    }

    fileprivate final class Rank: Communicator {
        let rank: Int
        let world: ThreadedWorld
        init(rank: Int, world: ThreadedWorld) { self.rank = rank; self.world = world }
        var size: Int { world.size }
        var localSize: Int { world.size }

        func allGather(_ send: UnsafeRawBufferPointer, into receive: UnsafeMutableRawBufferPointer) {
            precondition(receive.count == send.count * size)
            world.published[rank] = send
            world.barrier()
            for r in 0..<size {
                UnsafeMutableRawBufferPointer(rebasing: receive[(r * send.count)..<((r + 1) * send.count)]).copyMemory(from: world.published[r]!)
            }
            world.barrier()
        }

        func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Float>) {
            world.publishedFloats[rank] = buffer
            world.barrier()
            let sum = (0..<buffer.count).map { i in (0..<size).reduce(Float(0)) { $0 + world.publishedFloats[$1]![i] } }
            world.barrier()
            for i in sum.indices { buffer[i] = sum[i] }
            world.barrier()
        }

        func allReduceSum(_ buffer: UnsafeMutableBufferPointer<Double>) {
            world.publishedDoubles[rank] = buffer
            world.barrier()
            let sum = (0..<buffer.count).map { i in (0..<size).reduce(0.0) { $0 + world.publishedDoubles[$1]![i] } }
            world.barrier()
            for i in sum.indices { buffer[i] = sum[i] }
            world.barrier()
        }

        func broadcast(_ buffer: UnsafeMutableRawBufferPointer, root: Int) {
            if rank == root { world.published[root] = UnsafeRawBufferPointer(buffer) }
            world.barrier()
            if rank != root { buffer.copyMemory(from: world.published[root]!) }
            world.barrier()
        }

        func barrier() { world.barrier() }

        func abort(_ message: String, code: Int32) -> Never { fatalError("rank \(rank): \(message)") }
    }
}
