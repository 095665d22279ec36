// `dtrain-fuzz`: the fuzz targets of DTFuzz as one executable.
//  - built for libFuzzer (scripts/fuzz.sh: swift build -c release -sanitize=fuzzer,address -Xswiftc -DDTRAIN_FUZZ):
//      DTRAIN_FUZZ_TARGET=gguf dtrain-fuzz [libFuzzer flags] CORPUS_DIR…   (libFuzzer provides main)
//  - in an ordinary build, a replayer for reproducing a crash or checking a corpus without libFuzzer:
//      dtrain-fuzz TARGET FILE_OR_DIRECTORY…
import DTFuzz
import Foundation

#if DTRAIN_FUZZ
let fuzzTarget: String = {
    guard let t = ProcessInfo.processInfo.environment["DTRAIN_FUZZ_TARGET"], FuzzTargets.names.contains(t) else {
        FileHandle.standardError.write(Data("dtrain-fuzz: set DTRAIN_FUZZ_TARGET to one of \(FuzzTargets.names.joined(separator: ", "))\n".utf8))
        exit(2)
    }
    return t
}()

@_cdecl("LLVMFuzzerTestOneInput")
public func fuzzOneInput(_ data: UnsafePointer<UInt8>?, _ size: Int) -> CInt {
    FuzzTargets.run(fuzzTarget, UnsafeRawBufferPointer(start: data, count: size))
    return 0
}
#else
@main
struct Replay {
    static func main() {
        let args = CommandLine.arguments.dropFirst()
        guard let target = args.first, FuzzTargets.names.contains(target), args.count > 1 else {
            FileHandle.standardError.write(Data("usage: dtrain-fuzz TARGET FILE_OR_DIRECTORY… (targets: \(FuzzTargets.names.joined(separator: ", ")))\n".utf8))
            exit(2)
        }
        var count = 0
        for path in args.dropFirst() {
            var isDir: ObjCBool = false
            FileManager.default.fileExists(atPath: path, isDirectory: &isDir)
            let files = isDir.boolValue ? ((try? FileManager.default.contentsOfDirectory(atPath: path)) ?? []).sorted().map { path + "/" + $0 } : [path]
            for file in files {
                guard let data = FileManager.default.contents(atPath: file) else { continue }
                data.withUnsafeBytes { FuzzTargets.run(target, $0) }
                count += 1
            }
        }
        print("dtrain-fuzz: \(count) inputs through \(target), no crash")
    }
}
#endif
