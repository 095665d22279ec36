// Writes a directory of files so a reader never sees it half-written: everything goes into a temporary
// sibling, each file and the directory are fsynced, then one rename publishes it. A failure (disk full,
// file-size limit, permissions) leaves any previous directory untouched and is reported as an error.
import DTFormats
import Foundation
#if canImport(Glibc)
import Glibc
#endif

public enum AtomicDirectory {
    /// Publishes `files` (name → bytes) as directory `path`, replacing an existing one only after the new
    /// one is complete.
    public static func write(_ path: String, files: [(String, Data)]) throws {
        try build(path, replacing: true) { temporary in
            for (file, data) in files { try writeFile((temporary as NSString).appendingPathComponent(file), data) }
        }
    }

    /// Fills a temporary sibling of `path` with `fill(temporaryPath)` and publishes it as `path`. An existing
    /// `path` is replaced only with `replacing` and only after the new directory is complete; without it,
    /// an existing `path` is an error before anything is written.
    public static func build(_ path: String, replacing: Bool, _ fill: (String) throws -> Void) throws {
        if !replacing && FileManager.default.fileExists(atPath: path) {
            throw WriteError(path: path, "it already exists (pass --force to replace it)")
        }
        let parent = (path as NSString).deletingLastPathComponent
        let name = (path as NSString).lastPathComponent
        try makeDirectory(parent.isEmpty ? "." : parent)
        let temporary = (parent as NSString).appendingPathComponent(".tmp-\(name)-\(getpid())")
        try? FileManager.default.removeItem(atPath: temporary)
        try makeDirectory(temporary)
        do {
            try fill(temporary)
            try sync(temporary)
            if FileManager.default.fileExists(atPath: path) {
                let old = (parent as NSString).appendingPathComponent(".old-\(name)-\(getpid())")
                guard rename(path, old) == 0 else { throw WriteError(path: path, "cannot write: \(String(cString: strerror(errno)))") }
                guard rename(temporary, path) == 0 else { throw WriteError(path: path, "cannot write: \(String(cString: strerror(errno)))") }
                try? FileManager.default.removeItem(atPath: old)
            } else {
                guard rename(temporary, path) == 0 else { throw WriteError(path: path, "cannot write: \(String(cString: strerror(errno)))") }
            }
            try sync(parent.isEmpty ? "." : parent)
        } catch let e as WriteError where e.path.hasPrefix(temporary + "/") {
            try? FileManager.default.removeItem(atPath: temporary)
            // Name the file as the user will know it: inside `path`, not inside the temporary sibling.
            throw WriteError(path: (path as NSString).appendingPathComponent(String(e.path.dropFirst(temporary.count + 1))), e.message)
        } catch {
            try? FileManager.default.removeItem(atPath: temporary)
            throw error
        }
    }

    public static func makeDirectory(_ path: String) throws {
        do { try FileManager.default.createDirectory(atPath: path, withIntermediateDirectories: true) } catch {
            throw WriteError(path: path, "cannot create directory (\(error.localizedDescription))")
        }
    }

    /// Writes and fsyncs one file, reporting short writes (EFBIG under `ulimit -f`, ENOSPC) as errors.
    public static func writeFile(_ path: String, _ data: Data) throws {
        let fd = open(path, O_WRONLY | O_CREAT | O_TRUNC, 0o644)
        guard fd >= 0 else { throw WriteError(path: path, "cannot write: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        try data.withUnsafeBytes { raw in
            var offset = 0
            while offset < raw.count {
                let n = Glibc.write(fd, raw.baseAddress! + offset, raw.count - offset)
                if n < 0 {
                    if errno == EINTR { continue }
                    throw WriteError(path: path, "cannot write: \(String(cString: strerror(errno)))")
                }
                offset += n
            }
        }
        guard fsync(fd) == 0 else { throw WriteError(path: path, "fsync: \(String(cString: strerror(errno)))") }
    }

    static func sync(_ directory: String) throws {
        let fd = open(directory, O_RDONLY)
        guard fd >= 0 else { throw WriteError(path: directory, "cannot open: \(String(cString: strerror(errno)))") }
        defer { close(fd) }
        _ = fsync(fd)
    }
}
