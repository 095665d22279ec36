// Typed, strict reads of JSON objects (HF config.json, adapter_config.json, probe_config.json, …): an integer
// key takes only a JSON integer (not 64.5, 64.0 or true), a number key only a number (not a bool or a string),
// a bool key only true/false; every value outside its range is an error naming the file, the key and the range.
import Foundation

public struct JSONFields {
    public let file: String
    public let object: [String: Any]
    /// Key path of this object inside the file ("rope_scaling." for a nested one), for messages.
    public let prefix: String

    public init(file: String, object: [String: Any], prefix: String = "") {
        self.file = file; self.object = object; self.prefix = prefix
    }

    /// The JSON object in `path`; `what` names the expected file in errors ("a PEFT adapter directory").
    public static func read(_ path: String, expected what: String) throws -> JSONFields {
        guard let data = FileManager.default.contents(atPath: path) else {
            throw FormatError(file: path, location: "", "missing or unreadable (expected \(what))")
        }
        let parsed: Any
        do { parsed = try JSONSerialization.jsonObject(with: data) } catch {
            throw FormatError(file: path, location: "", "malformed JSON (expected \(what))")
        }
        guard let object = parsed as? [String: Any] else {
            throw FormatError(file: path, location: "", "expected a JSON object, found \(kind(of: parsed))")
        }
        return JSONFields(file: path, object: object)
    }

    /// True when the key is present and not null.
    public func has(_ key: String) -> Bool { object[key] != nil && !(object[key] is NSNull) }

    func error(_ key: String, _ message: String) -> FormatError { FormatError.key(file, prefix + key, message) }

    func found(_ key: String) -> String { Self.describe(object[key]) }

    /// A JSON integer literal in `range`; absent (or null) gives `fallback`, or an error without one.
    public func integer(_ key: String, default fallback: Int? = nil, in range: ClosedRange<Int> = Int.min...Int.max) throws -> Int {
        guard has(key) else {
            if let fallback { return fallback }
            throw error(key, "missing (expected an integer\(Self.describe(range)))")
        }
        guard let v = Self.integer(object[key]) else {
            throw error(key, "expected an integer\(Self.describe(range)), found \(found(key))")
        }
        guard range.contains(v) else { throw error(key, "expected an integer\(Self.describe(range)), found \(v)") }
        return v
    }

    /// A JSON number (integer or not, never a bool) that satisfies `valid`, described by `expected`.
    public func number(_ key: String, default fallback: Double? = nil, expected: String = "a number",
                       where valid: (Double) -> Bool = { _ in true }) throws -> Double {
        guard has(key) else {
            if let fallback { return fallback }
            throw error(key, "missing (expected \(expected))")
        }
        guard let n = object[key] as? NSNumber, !Self.isBool(n) else { throw error(key, "expected \(expected), found \(found(key))") }
        let v = n.doubleValue
        guard v.isFinite, valid(v) else { throw error(key, "expected \(expected), found \(v)") }
        return v
    }

    public func bool(_ key: String, default fallback: Bool? = nil) throws -> Bool {
        guard has(key) else {
            if let fallback { return fallback }
            throw error(key, "missing (expected true or false)")
        }
        guard let n = object[key] as? NSNumber, Self.isBool(n) else { throw error(key, "expected true or false, found \(found(key))") }
        return n.boolValue
    }

    public func string(_ key: String, default fallback: String? = nil) throws -> String {
        guard has(key) else {
            if let fallback { return fallback }
            throw error(key, "missing (expected a string)")
        }
        guard let s = object[key] as? String else { throw error(key, "expected a string, found \(found(key))") }
        return s
    }

    /// A list of strings (absent or null: nil).
    public func strings(_ key: String) throws -> [String]? {
        guard has(key) else { return nil }
        guard let list = object[key] as? [Any] else { throw error(key, "expected a list of strings, found \(found(key))") }
        return try list.enumerated().map { i, item in
            guard let s = item as? String else { throw error("\(key)[\(i)]", "expected a string, found \(Self.describe(item))") }
            return s
        }
    }

    /// A list of `count` finite numbers, each satisfying `valid` (described by `expected`).
    public func numbers(_ key: String, count: Int, expected: String, where valid: (Double) -> Bool = { _ in true }) throws -> [Double] {
        guard has(key) else { throw error(key, "missing (expected \(count) numbers, \(expected))") }
        guard let list = object[key] as? [Any], list.count == count else {
            throw error(key, "expected a list of \(count) numbers (\(expected)), found \(found(key).prefix(80))")
        }
        return try list.enumerated().map { i, item in
            guard let n = item as? NSNumber, !Self.isBool(n), n.doubleValue.isFinite, valid(n.doubleValue) else {
                throw error("\(key)[\(i)]", "expected \(expected), found \(Self.describe(item))")
            }
            return n.doubleValue
        }
    }

    /// A nested object (absent or null: nil).
    public func object(_ key: String) throws -> JSONFields? {
        guard has(key) else { return nil }
        guard let o = object[key] as? [String: Any] else { throw error(key, "expected an object, found \(found(key))") }
        return JSONFields(file: file, object: o, prefix: prefix + key + ".")
    }

    // JSONSerialization gives NSNumber for numbers and bools: a bool has objCType "c", a float "d"/"f".
    public static func isBool(_ n: NSNumber) -> Bool { String(cString: n.objCType) == "c" }
    public static func isInteger(_ n: NSNumber) -> Bool { !"cdf".contains(String(cString: n.objCType)) }

    /// A JSON integer literal's value, else nil (for values outside an object, e.g. list items).
    public static func integer(_ value: Any?) -> Int? {
        guard let n = value as? NSNumber, isInteger(n), n.description == "\(n.int64Value)" else { return nil }
        return Int(n.int64Value)
    }

    static func describe(_ range: ClosedRange<Int>) -> String {
        switch (range.lowerBound, range.upperBound) {
        case (Int.min, Int.max): return ""
        case (let a, Int.max): return " ≥ \(a)"
        case (Int.min, let b): return " ≤ \(b)"
        case (let a, let b): return " in [\(a), \(b)]"
        }
    }

    static func kind(of value: Any) -> String {
        switch value {
        case is [String: Any]: return "an object"
        case is [Any]: return "a list"
        case is String: return "a string"
        case is NSNull: return "null"
        case let n as NSNumber: return isBool(n) ? "a bool" : "a number"
        default: return "\(type(of: value))"
        }
    }

    /// A short description of a found value: `64.5`, `true`, `"16"` (a string), `a list`.
    public static func describe(_ value: Any?) -> String {
        switch value {
        case nil: return "nothing"
        case let s as String: return "\"\(s.prefix(40))\" (a string)"
        case let n as NSNumber: return isBool(n) ? (n.boolValue ? "true" : "false") : n.description
        case let v?: return kind(of: v)
        }
    }
}
