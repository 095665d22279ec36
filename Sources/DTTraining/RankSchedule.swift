// Which items a rank works on, in how many passes. Items 0..<count are cut into B batches of consecutive items,
// as equal as they can be (sizes differ by at most one, larger first) and none above the pass limit; batch k goes
// to rank k mod N. B = ⌈count / limit⌉ — the same on any number of ranks, so a batch has the same items (the same
// padding, the same sums) on 1 rank or N — unless that leaves a rank idle: then B = min(N, count). Every rank runs
// the same number of passes ⌈B / N⌉ — a sharded base gathers each layer collectively, so a rank with no batch left
// runs an empty pass. Training steps, validation, `dtrain eval` and the probe's features take their share from here.
import DTParallel

public struct RankSchedule: Equatable, Sendable {
    public let count: Int, rank: Int, ranks: Int
    /// Batches over all ranks.
    public let batches: Int

    /// `limit` is the most items a pass may hold (the workspace's batch).
    public init(count: Int, batch limit: Int, rank: Int, ranks: Int) {
        precondition(count >= 0 && limit >= 1 && ranks >= 1 && (0..<ranks).contains(rank), "bad rank schedule")
        self.count = count; self.rank = rank; self.ranks = ranks
        batches = count == 0 ? 0 : max((count + limit - 1) / limit, min(ranks, count))
    }

    public init(count: Int, batch limit: Int, comm: Communicator) {
        self.init(count: count, batch: limit, rank: comm.rank, ranks: comm.size)
    }

    /// The largest batch (what a workspace must hold).
    public var batch: Int { batches == 0 ? 1 : (count + batches - 1) / batches }

    /// Passes every rank runs (the same on all ranks).
    public var passes: Int { (batches + ranks - 1) / ranks }

    /// Items of batch k: sizes ⌊count/B⌋ + 1 for the first count mod B batches, ⌊count/B⌋ after.
    func items(ofBatch k: Int) -> Range<Int> {
        let (q, r) = count.quotientAndRemainder(dividingBy: batches)
        let start = k * q + min(k, r)
        return start..<start + q + (k < r ? 1 : 0)
    }

    /// The items of this rank's pass `p` (empty: a pass that only keeps the collectives matched).
    public func items(ofPass p: Int) -> Range<Int> {
        precondition((0..<passes).contains(p), "pass \(p) of \(passes)")
        let k = p * ranks + rank
        return k < batches ? items(ofBatch: k) : 0..<0
    }

    /// Every pass of this rank, in order.
    public var allPasses: [Range<Int>] { (0..<passes).map(items(ofPass:)) }

    /// Items this rank works on in all.
    public var itemCount: Int { allPasses.reduce(0) { $0 + $1.count } }
}
