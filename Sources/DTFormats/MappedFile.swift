// A read-only memory map of a whole file. Ranks on one node that map the same model share its pages.
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public final class MappedFile {
    public let path: String
    public let bytes: UnsafeRawBufferPointer
    private let base: UnsafeMutableRawPointer?

    public init(path: String) throws {
        self.path = path
        let fd = open(path, O_RDONLY)
        guard fd >= 0 else {
            throw FormatError(file: path, location: "", "cannot open: \(String(cString: strerror(errno)))")
        }
        defer { close(fd) }
        var info = stat()
        guard fstat(fd, &info) == 0 else {
            throw FormatError(file: path, location: "", "cannot stat: \(String(cString: strerror(errno)))")
        }
        guard (info.st_mode & S_IFMT) == S_IFREG else {
            throw FormatError(file: path, location: "", "expected a regular file")
        }
        let size = Int(info.st_size)
        if size == 0 {
            base = nil
            bytes = UnsafeRawBufferPointer(start: nil, count: 0)
            return
        }
        guard let mapped = mmap(nil, size, PROT_READ, MAP_SHARED, fd, 0), mapped != MAP_FAILED else {
            throw FormatError(file: path, location: "", "cannot mmap: \(String(cString: strerror(errno)))")
        }
        base = mapped
        bytes = UnsafeRawBufferPointer(start: mapped, count: size)
    }

    /// Drops this process's resident pages of the mapping (they come back from the page cache if read
    /// again). Used once the model has copied out everything it keeps, so RSS shows what is really held.
    public func releaseResidentPages() {
        if let base { madvise(base, bytes.count, Int32(MADV_DONTNEED)) }
    }

    /// Drops this process's resident pages of the whole pages inside `range` (a part of the mapping, e.g. one
    /// tensor that has been converted into memory the model owns). Loading a checkpoint tensor by tensor with
    /// this keeps the resident set at the converted base plus one tensor, instead of the whole file; a page read
    /// again later simply comes back from the page cache. Pages shared with a neighbouring range stay.
    public func releaseResidentPages(of range: UnsafeRawBufferPointer) {
        guard let base, let start = range.baseAddress, range.count > 0 else { return }
        let page = Int(sysconf(Int32(_SC_PAGESIZE)))
        let offset = start - UnsafeRawPointer(base)
        precondition(offset >= 0 && offset + range.count <= bytes.count, "range outside the mapping of \(path)")
        let first = (offset + page - 1) / page * page, end = (offset + range.count) / page * page
        if end > first { madvise(base + first, end - first, Int32(MADV_DONTNEED)) }
    }

    deinit {
        if let base { munmap(base, bytes.count) }
    }
}
