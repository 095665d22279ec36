// One configuration key of `dtrain train`: its YAML name (the flag is the same with dashes), its type, the
// check its values must pass, its help text and whether a resumed run must agree with the checkpoint on it.
// Built by the typed constructors below (`.int`, `.double`, `.bool`, `.string`, `.choice`, `.list`) over a key
// path of `TrainConfig`; the table itself is `TrainConfig.keys` (TrainConfig.swift). The default is the stored
// property's initial value.
import DTFormats

/// A string-backed enumeration a configuration key can hold (`method: lora`); its cases are the key's choices.
public protocol ConfigChoice: CaseIterable, RawRepresentable, Sendable where RawValue == String {}

public struct ConfigKey: Sendable {
    /// The YAML type a value must have (TrainConfig.text(of:kind:)): an integer key refuses 8.5 and true.
    public enum Kind: Sendable { case integer, number, flag, list, text }
    /// Whether a run resuming from a checkpoint must have the checkpoint's value (the key changes the math).
    public enum OnResume: Sendable { case mustMatch, free }

    public let name: String
    public let kind: Kind
    public let help: String
    /// The closed set of values (of each item, for a list); empty for free values.
    public let choices: [String]
    /// What a value looks like in --help: `lora|qlora|prompt|probe`, `int`, `path`.
    public let valueName: String
    /// What a value must be, as an error says it: "an integer ≥ 1", "a finite number > 0", "stop | skip".
    public let accepts: String
    public let onResume: OnResume
    /// Sets the value from its text form; false (and the configuration unchanged) if the text is not `accepts`.
    let parse: @Sendable (inout TrainConfig, String) -> Bool
    /// The text form: what `parse` reads back, config.yaml holds (quoted if text, bracketed if a list) and a
    /// resume compares.
    public let format: @Sendable (TrainConfig) -> String

    /// `--learning-rate` for `learning_rate`.
    public var flag: String { "--" + name.replacingOccurrences(of: "_", with: "-") }
    public var defaultText: String { format(TrainConfig()) }

    /// The help text with what a number must be, a list's items and the default, as --help shows it.
    public var helpLine: String {
        let notes = (kind == .integer || kind == .number ? [accepts] : [])
            + (kind == .list ? ["any of \(choices.joined(separator: ", ")), separated by commas or spaces"] : [])
            + (defaultText.isEmpty ? [] : ["default: \(defaultText)"])
        return notes.isEmpty ? help : "\(help) (\(notes.joined(separator: "; ")))"
    }
}

extension ConfigKey {
    /// An integer in `range`.
    static func int(_ path: WritableKeyPath<TrainConfig, Int>, _ name: String, _ range: ClosedRange<Int>,
                    _ onResume: OnResume = .free, help: String) -> ConfigKey {
        let accepts = range.upperBound == Int.max ? "an integer ≥ \(range.lowerBound)" : "an integer in [\(range.lowerBound), \(range.upperBound)]"
        return ConfigKey(name: name, kind: .integer, help: help, choices: [], valueName: "int", accepts: accepts, onResume: onResume, parse: { config, text in
            guard let v = Int(text), range.contains(v) else { return false }
            config[keyPath: path] = v
            return true
        }, format: { "\($0[keyPath: path])" })
    }

    /// A finite number passing `check`: NaN and ±inf never enter.
    static func double(_ path: WritableKeyPath<TrainConfig, Double>, _ name: String, _ check: Check,
                       _ onResume: OnResume = .free, help: String) -> ConfigKey {
        ConfigKey(name: name, kind: .number, help: help, choices: [], valueName: "number", accepts: "a finite number \(check.description)",
                  onResume: onResume, parse: { config, text in
            guard let v = Double(text), v.isFinite, check.test(v) else { return false }
            config[keyPath: path] = v
            return true
        }, format: { "\($0[keyPath: path])" })
    }

    /// The range of a number key, as the error message names it.
    struct Check: Sendable {
        let description: String
        let test: @Sendable (Double) -> Bool
        static let positive = Check(description: "> 0") { $0 > 0 }
        static let nonNegative = Check(description: "≥ 0") { $0 >= 0 }
        static let fraction = Check(description: "in [0, 1)") { $0 >= 0 && $0 < 1 }
    }

    /// true or false.
    static func bool(_ path: WritableKeyPath<TrainConfig, Bool>, _ name: String, _ onResume: OnResume = .free, help: String) -> ConfigKey {
        ConfigKey(name: name, kind: .flag, help: help, choices: ["true", "false"], valueName: "true|false", accepts: "true or false",
                  onResume: onResume, parse: { config, text in
            guard let v = Bool(text) else { return false }
            config[keyPath: path] = v
            return true
        }, format: { "\($0[keyPath: path])" })
    }

    /// Free text (a path, a prompt) or a value written as text (`resume`): any string is accepted.
    static func string<T: LosslessStringConvertible>(_ path: WritableKeyPath<TrainConfig, T>, _ name: String, _ onResume: OnResume = .free,
                                                     valueName: String, help: String) -> ConfigKey {
        ConfigKey(name: name, kind: .text, help: help, choices: [], valueName: valueName, accepts: valueName, onResume: onResume, parse: { config, text in
            guard let v = T(text) else { return false }
            config[keyPath: path] = v
            return true
        }, format: { $0[keyPath: path].description })
    }

    /// One of the enumeration's cases (`only` some of them, if named).
    static func choice<E: ConfigChoice>(_ path: WritableKeyPath<TrainConfig, E>, _ name: String, _ onResume: OnResume = .free,
                                        only cases: [E] = Array(E.allCases), help: String) -> ConfigKey {
        let names = cases.map(\.rawValue)
        return ConfigKey(name: name, kind: .text, help: help, choices: names, valueName: names.joined(separator: "|"),
                         accepts: names.joined(separator: " | "), onResume: onResume, parse: { config, text in
            guard names.contains(text), let v = E(rawValue: text) else { return false }
            config[keyPath: path] = v
            return true
        }, format: { $0[keyPath: path].rawValue })
    }

    /// One of the enumeration's cases, or `unset` (the empty string) for none.
    static func choice<E: ConfigChoice>(_ path: WritableKeyPath<TrainConfig, E?>, _ name: String, unset: String = "",
                                        _ onResume: OnResume = .free, help: String) -> ConfigKey {
        let names = E.allCases.map(\.rawValue)
        return ConfigKey(name: name, kind: .text, help: help, choices: names, valueName: names.joined(separator: "|"),
                         accepts: "\(names.joined(separator: " | ")) or \"\(unset)\"", onResume: onResume, parse: { config, text in
            guard text == unset || names.contains(text) else { return false }
            config[keyPath: path] = E(rawValue: text)
            return true
        }, format: { $0[keyPath: path]?.rawValue ?? unset })
    }

    /// A non-empty list of the enumeration's cases, in the order given (text: separated by commas or spaces).
    static func list<E: ConfigChoice>(_ path: WritableKeyPath<TrainConfig, [E]>, _ name: String, _ onResume: OnResume = .free,
                                      help: String) -> ConfigKey {
        let names = E.allCases.map(\.rawValue)
        return ConfigKey(name: name, kind: .list, help: help, choices: names, valueName: "names", accepts: "a list of \(names.joined(separator: ", "))",
                         onResume: onResume, parse: { config, text in
            let words = text.split(whereSeparator: { $0 == "," || $0 == " " }), items = words.compactMap { E(rawValue: String($0)) }
            guard !words.isEmpty, items.count == words.count else { return false }
            config[keyPath: path] = items
            return true
        }, format: { $0[keyPath: path].map(\.rawValue).joined(separator: " ") })
    }
}

extension TrainConfig {
    /// The key named `name`; asking for a key that is not in the table is a programmer's mistake.
    public static func key(named name: String) -> ConfigKey {
        guard let key = keysByName[name] else { preconditionFailure("'\(name)' is not a key of TrainConfig.keys") }
        return key
    }

    static let keysByName: [String: ConfigKey] = {
        let byName = Dictionary(keys.map { ($0.name, $0) }, uniquingKeysWith: { a, _ in preconditionFailure("key '\(a.name)' declared twice") })
        return byName
    }()

    static var unknownKeyMessage: String { "unknown configuration key (known: \(keys.map(\.name).joined(separator: ", ")))" }

    /// Sets `key` from its text form; `source` names the file or flag for errors.
    public mutating func set(_ key: String, _ value: String, source: String) throws {
        guard let entry = Self.keysByName[key] else { throw FormatError.key(source, key, Self.unknownKeyMessage) }
        guard entry.parse(&self, value) else { throw FormatError.key(source, key, "expected \(entry.accepts), found '\(value)'") }
    }

    /// The text form of `key`'s value (as config.yaml holds it, unquoted).
    public func value(_ key: String) -> String { Self.key(named: key).format(self) }
}
