// Output files that appear whole or not at all. Bytes stream into a temporary sibling `.<name>.tmp-<pid>` in
// the destination's directory (so the final rename stays on one filesystem); commit() fsyncs it, renames it
// over the destination and fsyncs the directory. A file already at the destination is never opened: it stays
// as it was until that rename, and is refused unless the caller allows overwriting (`--force`). Any failure
// removes the temporary file, and so does dropping a writer that was not committed.
//
// Writing past RLIMIT_FSIZE raises SIGXFSZ, which kills the process before write() can report EFBIG unless
// the program ignores that signal; the dtrain binary decides that, not this library.
#if canImport(Glibc)
import Glibc
#endif

public final class AtomicFileWriter {
    /// The destination.
    public let path: String
    /// Where the bytes go until commit().
    public let temporaryPath: String
    /// Bytes written so far.
    public private(set) var offset = 0

    private let overwrite: Bool
    private let directory: String
    private var fd: Int32 = -1
    private var state = State.open

    private enum State { case open, committed, abandoned }

    /// Creates the temporary file. Throws if `path` exists and `overwrite` is false, if `path` is a directory,
    /// or if the temporary file cannot be created.
    public init(path: String, overwrite: Bool) throws {
        self.path = path
        self.overwrite = overwrite
        let name: Substring
        if let slash = path.lastIndex(of: "/") {
            directory = slash == path.startIndex ? "/" : String(path[..<slash])
            name = path[path.index(after: slash)...]
        } else {
            directory = "."
            name = Substring(path)
        }
        guard !name.isEmpty, name != ".", name != ".." else {
            throw WriteError(path: path, "expected the path of a file, not a directory")
        }
        temporaryPath = (directory == "/" ? "/" : directory + "/") + ".\(name).tmp-\(getpid())"
        var info = stat()
        if lstat(path, &info) == 0 {
            guard (info.st_mode & S_IFMT) != S_IFDIR else {
                throw WriteError(path: path, "is a directory; expected the path of a file")
            }
            guard overwrite else {
                throw WriteError(path: path, "already exists; pass --force to overwrite it")
            }
        }
        // A leftover of an earlier process that had this pid (pids repeat in containers) is stale.
        unlink(temporaryPath)
        fd = open(temporaryPath, O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0o644)
        guard fd >= 0 else {
            throw WriteError(path: path, "cannot create the temporary file \(temporaryPath): \(Self.reason(errno))")
        }
    }

    deinit { abandon() }

    /// Appends `bytes`. A failure (ENOSPC, EFBIG, EIO…) abandons the file and throws.
    public func write(_ bytes: UnsafeRawBufferPointer) throws {
        try checkOpen("write")
        guard var p = bytes.baseAddress else { return }
        var left = bytes.count
        while left > 0 {
            let n = Glibc.write(fd, p, min(left, 1 << 30))
            if n < 0 && errno == EINTR { continue }
            guard n > 0 else {
                let why = n == 0 ? "the system wrote 0 bytes" : Self.reason(errno)
                throw fail("cannot write \(left) bytes at offset \(offset) to \(temporaryPath): \(why)")
            }
            p += n
            left -= n
            offset += n
        }
    }

    /// Appends zero bytes until `offset` is a multiple of `alignment`.
    public func pad(to alignment: Int) throws {
        precondition(alignment > 0, "alignment \(alignment)")
        var left = (alignment - offset % alignment) % alignment
        guard left > 0 else { return }
        try withUnsafeTemporaryAllocation(byteCount: min(left, 4096), alignment: 16) { zeros in
            zeros.initializeMemory(as: UInt8.self, repeating: 0)
            while left > 0 {
                let n = min(left, zeros.count)
                try write(UnsafeRawBufferPointer(rebasing: zeros[0..<n]))
                left -= n
            }
        }
    }

    /// Flushes the file to disk and moves it to `path` (replacing a file there only if `overwrite`), then
    /// flushes the directory entry. On failure the temporary file is removed and `path` is as it was.
    public func commit() throws {
        try checkOpen("commit")
        guard fsync(fd) == 0 else { throw fail("cannot flush \(temporaryPath) to disk: \(Self.reason(errno))") }
        let closing = fd
        fd = -1
        guard close(closing) == 0 else { throw fail("cannot close \(temporaryPath): \(Self.reason(errno))") }
        if overwrite {
            guard rename(temporaryPath, path) == 0 else {
                throw fail("cannot rename \(temporaryPath) to the output: \(Self.reason(errno))")
            }
        } else if link(temporaryPath, path) == 0 {
            // link() refuses an existing destination, so a file that appeared meanwhile is kept.
            unlink(temporaryPath)
        } else {
            let code = errno
            if code == EEXIST { throw fail("appeared while it was being written; pass --force to overwrite it") }
            // Filesystems without hard links: check, then rename.
            var info = stat()
            if lstat(path, &info) == 0 { throw fail("appeared while it was being written; pass --force to overwrite it") }
            guard rename(temporaryPath, path) == 0 else {
                throw fail("cannot rename \(temporaryPath) to the output: \(Self.reason(errno))")
            }
        }
        state = .committed
        let dir = open(directory, O_RDONLY | O_DIRECTORY | O_CLOEXEC)
        if dir >= 0 {
            let synced = fsync(dir) == 0 || errno == EINVAL || errno == ENOTSUP
            let code = errno
            close(dir)
            guard synced else {
                throw WriteError(path: path, "was written, but its directory \(directory) could not be flushed to disk: \(Self.reason(code))")
            }
        }
    }

    /// Removes the temporary file; `path` is left as it was. Nothing happens after commit() or a failure.
    public func abandon() {
        guard state == .open else { return }
        state = .abandoned
        if fd >= 0 {
            close(fd)
            fd = -1
        }
        unlink(temporaryPath)
    }

    private func checkOpen(_ what: String) throws {
        switch state {
        case .open: return
        case .committed: throw WriteError(path: path, "cannot \(what): the file is already committed")
        case .abandoned: throw WriteError(path: path, "cannot \(what): writing was abandoned after an earlier failure")
        }
    }

    /// Abandons the file and returns the error to throw.
    private func fail(_ message: String) -> WriteError {
        abandon()
        return WriteError(path: path, message + " (nothing was written to \(path))")
    }

    static func reason(_ code: Int32) -> String {
        String(cString: strerror(code))
    }
}
