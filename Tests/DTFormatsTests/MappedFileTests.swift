// Streaming loads rest on one operation: dropping the resident pages of one part of a mapped model file once
// it has been converted, so a load holds the converted base plus one tensor instead of the whole file.
import DTFormats
import Foundation
import TestSupport
import XCTest

final class MappedFileTests: XCTestCase {
    /// Invariant: releasing a range drops exactly the whole pages inside it from this process's resident set
    /// (pages it only partly covers stay, the rest of the mapping stays), and the bytes still read back intact.
    func testReleasingARangeDropsItsWholePages() throws {
        let page = Int(sysconf(Int32(_SC_PAGESIZE))), pages = 64
        let path = temporaryDirectory() + "/weights.bin"
        let bytes = (0..<pages * page).map { UInt8(truncatingIfNeeded: $0 &* 7 &+ $0 / page) }
        FileManager.default.createFile(atPath: path, contents: Data(bytes))
        let file = try MappedFile(path: path)
        var sum = 0
        for i in stride(from: 0, to: file.bytes.count, by: page) { sum &+= Int(file.bytes[i]) }   // touch every page
        XCTAssertEqual(MappedResidency.kibibytes(of: path), pages * page / 1024)
        // From the middle of page 10 to the middle of page 30: pages 11…29 (19 pages) go, 10 and 30 stay.
        file.releaseResidentPages(of: UnsafeRawBufferPointer(rebasing: file.bytes[(10 * page + page / 2)..<(30 * page + page / 2)]))
        XCTAssertEqual(MappedResidency.kibibytes(of: path), (pages - 19) * page / 1024)
        XCTAssertEqual(Array(file.bytes), bytes, "released pages read back from the page cache unchanged")
        file.releaseResidentPages(of: UnsafeRawBufferPointer(rebasing: file.bytes[0..<(page - 1)]))   // no whole page
        XCTAssertEqual(MappedResidency.kibibytes(of: path), pages * page / 1024)
        XCTAssertGreaterThan(sum, 0)
    }
}
