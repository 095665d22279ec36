// RankSchedule, the one answer to "which items does this rank take, in how many passes", checked exhaustively
// over small sizes against what the loops that use it rely on.
import DTTraining
import XCTest

final class RankScheduleTests: XCTestCase {
    /// Invariants, for every count 0…40, batch limit 1…9 and 1…5 ranks: every item is taken exactly once by one
    /// rank; every rank runs the same number of passes (the collectives of a sharded base stay matched); no pass
    /// holds more than the limit, nor more than `batch`; when the 1-rank run has at least N batches, the batches
    /// are the 1-rank run's (same composition, so the same padding and sums); when there are at least as many items
    /// as ranks, no rank is left without work.
    func testEveryItemOnceEqualPassesAndOneRankBatches() {
        for count in 0...40 {
            for limit in 1...9 {
                let single = RankSchedule(count: count, batch: limit, rank: 0, ranks: 1).allPasses.filter { !$0.isEmpty }
                XCTAssertEqual(single.flatMap { Array($0) }, Array(0..<count))
                for ranks in 1...5 {
                    let schedules = (0..<ranks).map { RankSchedule(count: count, batch: limit, rank: $0, ranks: ranks) }
                    let passes = schedules.map(\.passes)
                    XCTAssertEqual(Set(passes).count, 1, "pass counts differ: \(passes) for \(count) items, limit \(limit), \(ranks) ranks")
                    let all = schedules.flatMap(\.allPasses)
                    XCTAssertEqual(all.flatMap { Array($0) }.sorted(), Array(0..<count), "\(count) items, limit \(limit), \(ranks) ranks")
                    XCTAssertTrue(all.allSatisfy { $0.count <= limit && $0.count <= schedules[0].batch })
                    if single.count >= ranks {
                        XCTAssertEqual(Set(all.filter { !$0.isEmpty }), Set(single), "\(count) items, limit \(limit), \(ranks) ranks")
                    }
                    if count >= ranks {
                        XCTAssertTrue(schedules.allSatisfy { $0.itemCount > 0 }, "an idle rank: \(count) items, limit \(limit), \(ranks) ranks")
                    }
                }
            }
        }
    }

    /// Invariant: the share is balanced — ranks' item counts differ by at most one batch; a 1-rank run keeps
    /// the plain micro-batches of `limit` when they divide the items (8 = 4 + 4, not 3 + 3 + 2).
    func testSharesDifferByAtMostOneBatch() {
        for (count, limit, ranks) in [(8, 4, 2), (8, 4, 4), (100, 8, 3), (13, 2, 5)] {
            let shares = (0..<ranks).map { RankSchedule(count: count, batch: limit, rank: $0, ranks: ranks).itemCount }
            let batch = RankSchedule(count: count, batch: limit, rank: 0, ranks: ranks).batch
            XCTAssertLessThanOrEqual(shares.max()! - shares.min()!, batch, "\(shares)")
        }
        XCTAssertEqual(RankSchedule(count: 8, batch: 4, rank: 0, ranks: 1).allPasses, [0..<4, 4..<8])
        XCTAssertEqual(RankSchedule(count: 8, batch: 3, rank: 0, ranks: 1).allPasses, [0..<3, 3..<6, 6..<8])
        XCTAssertEqual(RankSchedule(count: 3, batch: 8, rank: 1, ranks: 2).allPasses, [2..<3])
    }
}
