// swift-tools-version:6.0
// dtrain: parameter-efficient fine-tuning of Llama-family models on CPU machines and clusters.
// OpenBLAS and OpenMPI come from Debian (libopenblas-dev, libopenmpi-dev) and are found with pkg-config.
import PackageDescription

// Release builds keep bounds checks and preconditions (-O): the parsers and the library rely on them, and the
// tests run in release. Only the hot kernels (DTKernels: pointer loops, no parsing) keep -Ounchecked, which
// gave 2–3% of forward and training speed there (docs/benchmarks.md); their fatal checks use fatalError.
let release: [SwiftSetting] = []
let hotKernels: [SwiftSetting] = [.unsafeFlags(["-Ounchecked"], .when(configuration: .release))]

let package = Package(
    name: "dtrain",
    platforms: [.macOS(.v13)],
    products: [
        .executable(name: "dtrain", targets: ["dtrain"]),
        // libFuzzer targets (scripts/fuzz.sh builds this with -sanitize=fuzzer,address -Xswiftc -DDTRAIN_FUZZ);
        // an ordinary build makes a corpus replayer of it.
        .executable(name: "dtrain-fuzz", targets: ["dtrain-fuzz"]),
    ],
    dependencies: [
        .package(url: "https://github.com/apple/swift-argument-parser", from: "1.5.0"),
        .package(url: "https://github.com/jpsim/Yams", from: "5.0.1"),
    ],
    targets: [
        .systemLibrary(name: "CBLAS", pkgConfig: "openblas",
                       providers: [.apt(["libopenblas-dev"])]),
        .systemLibrary(name: "CMPI", pkgConfig: "ompi-c",
                       providers: [.apt(["libopenmpi-dev"])]),
        // bf16 conversion and oneDNN's matmul (Debian libdnnl-dev, OpenMP runtime): the bf16 products.
        .target(name: "CBF16", cSettings: [.unsafeFlags(["-O3"])],
                linkerSettings: [.linkedLibrary("dnnl"), .linkedLibrary("gomp")]),
        // Register-blocked products for attention tiles: AVX-512 fp32, and AVX512-BF16 with fp32 accumulation.
        .target(name: "CKernels", cSettings: [.unsafeFlags(["-O3"])]),
        // AVX-512 element-wise loops (softmax rows, SwiGLU) with the exp DTKernels uses.
        .target(name: "CVectorMath", cSettings: [.unsafeFlags(["-O3"])]),
        .target(name: "DTFormats", swiftSettings: release),
        .target(name: "DTKernels", dependencies: ["CBLAS", "CBF16", "CKernels", "CVectorMath"], swiftSettings: hotKernels),
        .target(name: "DTParallel", dependencies: ["CMPI"], swiftSettings: release),
        .target(name: "DTTokenizer", dependencies: ["DTFormats"], swiftSettings: release),
        .target(name: "DTModel", dependencies: ["DTFormats", "DTKernels", "DTTokenizer", "DTParallel"], swiftSettings: release),
        .target(name: "DTTraining", dependencies: ["DTFormats", "DTKernels", "DTModel", "DTTokenizer", "DTParallel",
                                               .product(name: "Yams", package: "Yams")],
                swiftSettings: release),
        // The runs (train, probe, eval) and what every command sets up: the library side of the CLI, no argument parsing.
        .target(name: "DTRuns", dependencies: ["DTFormats", "DTKernels", "DTParallel", "DTTokenizer", "DTModel", "DTTraining"],
                swiftSettings: release),
        .target(name: "DTCommands", dependencies: [
            "DTFormats", "DTKernels", "DTParallel", "DTTokenizer", "DTModel", "DTTraining", "DTRuns",
            .product(name: "ArgumentParser", package: "swift-argument-parser"),
            .product(name: "Yams", package: "Yams"),
        ], swiftSettings: release),
        .executableTarget(name: "dtrain", dependencies: ["DTCommands", "DTKernels"], swiftSettings: release),
        .target(name: "DTFuzz", dependencies: ["DTCommands", "DTRuns", "DTFormats", "DTModel", "DTTokenizer", "DTTraining"], swiftSettings: release),
        .executableTarget(name: "dtrain-fuzz", dependencies: ["DTFuzz"], swiftSettings: release),
        .target(name: "TestSupport", dependencies: ["DTFormats", "DTModel", "DTParallel", "DTTraining"], path: "Tests/TestSupport"),
        .testTarget(name: "DTFormatsTests", dependencies: ["DTFormats", "TestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "DTKernelsTests", dependencies: ["DTKernels"]),
        .testTarget(name: "DTTokenizerTests", dependencies: ["DTTokenizer", "DTFormats", "TestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "DTModelTests", dependencies: ["DTModel", "DTFormats", "DTKernels", "TestSupport"],
                    resources: [.copy("Fixtures")]),
        .testTarget(name: "DTTrainingTests", dependencies: ["DTTraining", "DTModel", "DTKernels", "DTFormats", "DTTokenizer", "DTParallel", "TestSupport",
                                                   .product(name: "Yams", package: "Yams")],
                    resources: [.copy("Fixtures")]),
        // Fixtures/hostile is read in place by HostileInputTests (dtrain runs there), not bundled.
        .testTarget(name: "DTCommandsTests", dependencies: ["DTCommands", "DTRuns", "DTKernels", "DTModel", "DTParallel", "DTTraining", "DTFuzz", "TestSupport"],
                    exclude: ["Fixtures"]),
    ],
    swiftLanguageModes: [.v5]
)
