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

    deinit {
        if let base { munmap(base, bytes.count) }
    }
}
