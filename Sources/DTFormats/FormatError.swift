// The typed errors for what a user gives dtrain: bad model, tokenizer, adapter and data files (FormatError: the
// file, where in it — byte offset, key or line — what was expected and what was found), output files that cannot
// be written (WriteError: the output path, the step that failed and the system's reason), and requests that cannot
// be carried out as asked (CommandError: a flag or configuration value, or a combination of them, with the fix).
// Beside them only errors that are not about input: NumericalError (a diverging run), StoppedBySignal (preemption)
// and BF16Unavailable (the CPU). Programmer mistakes are preconditions, not errors.
import Foundation

public struct FormatError: Error, CustomStringConvertible, Equatable {
    public var file: String
    public var location: String
    public var message: String

    public init(file: String, location: String, _ message: String) {
        self.file = file
        self.location = location
        self.message = message
    }

    public static func at(_ file: String, offset: Int, _ message: String) -> FormatError {
        FormatError(file: file, location: "byte offset \(offset)", message)
    }

    public static func key(_ file: String, _ key: String, _ message: String) -> FormatError {
        FormatError(file: file, location: "key '\(key)'", message)
    }

    public static func line(_ file: String, _ line: Int, _ message: String) -> FormatError {
        FormatError(file: file, location: "line \(line)", message)
    }

    /// Refuses a tensor (or list) read from `file` under `key` that holds NaN or ±inf, naming the first index.
    public static func requireFinite(_ values: [Float], file: String, key: String) throws {
        if let i = values.firstIndex(where: { !$0.isFinite }) {
            throw FormatError.key(file, key, "value \(i) of \(values.count) is \(values[i]) (expected finite numbers)")
        }
    }

    public var description: String {
        location.isEmpty ? "\(file): \(message)" : "\(file): \(location): \(message)"
    }
}

public struct WriteError: Error, CustomStringConvertible, Equatable {
    /// The output file (not its temporary sibling).
    public var path: String
    public var message: String

    public init(path: String, _ message: String) {
        self.path = path
        self.message = message
    }

    public var description: String { "\(path): \(message)" }
}

public struct CommandError: Error, CustomStringConvertible, Equatable {
    public var description: String
    public init(_ description: String) { self.description = description }
}
