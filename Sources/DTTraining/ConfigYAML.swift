// The configuration as YAML: reading a run.yaml (or a checkpoint's config.yaml) strictly — unknown keys,
// values of another YAML type than the key's, and duplicate keys are errors naming the file, the line and the
// key; numbers out of range are refused by the key's entry in `TrainConfig.keys` — and writing the resolved
// configuration (every key, defaults filled in) so that it reads back to the same configuration.
import DTFormats
import Yams

extension TrainConfig {
    /// Applies a YAML file: a mapping of known keys to scalars of their type (a list for lora_targets). The
    /// document is composed, not constructed, so a key given twice is seen (and refused, naming both lines) and
    /// aliases are never expanded. It is composed on a stack that fits its deepest possible nesting
    /// (`YAMLNesting`); on an error the configuration is unchanged.
    public mutating func apply(yaml text: String, source: String) throws {
        let openings = YAMLNesting.openingsBound(text)
        guard openings <= YAMLNesting.maximumOpenings else {
            throw FormatError(file: source, location: "", "\(openings) characters that open YAML collections ([ { - ? :); a configuration "
                              + "has a few dozen (at most \(YAMLNesting.maximumOpenings) are read)")
        }
        var updated = self
        try YAMLNesting.onStack(for: openings, file: source) { try updated.applyComposed(yaml: text, source: source) }
        self = updated
    }

    private mutating func applyComposed(yaml text: String, source: String) throws {
        let root: Node?
        do { root = try Yams.compose(yaml: text) } catch {
            throw FormatError(file: source, location: "", "malformed YAML: \(error)")
        }
        guard let root else { return }
        guard let mapping = root.mapping else {
            throw FormatError(file: source, location: "line \(root.mark?.line ?? 1)", "expected a mapping of configuration keys")
        }
        var seen: [String: Int] = [:]
        for (keyNode, valueNode) in mapping {
            let line = keyNode.mark?.line ?? 0
            guard let key = keyNode.scalar?.string else {
                throw FormatError(file: source, location: "line \(line)", "expected a configuration key, found a \(keyNode.mapping != nil ? "mapping" : "list")")
            }
            let location = "line \(line), key '\(key)'"
            guard let entry = Self.keysByName[key] else { throw FormatError(file: source, location: location, Self.unknownKeyMessage) }
            if let first = seen[key] { throw FormatError(file: source, location: location, "duplicate key (first given at line \(first))") }
            seen[key] = line
            let text = try Self.text(of: valueNode, kind: entry.kind, file: source, location: location)
            do { try set(key, text, source: source) } catch var error as FormatError {
                error.location = "line \(line), " + error.location
                throw error
            }
        }
    }

    /// The text form of a YAML value for a key of `kind`, refusing values of another type.
    static func text(of node: Node, kind: ConfigKey.Kind, file: String, location: String) throws -> String {
        func refuse(_ expected: String, _ found: String) -> FormatError {
            FormatError(file: file, location: location, "expected \(expected), found \(found)")
        }
        func describe(_ n: Node) -> String {
            guard let s = n.scalar else { return n.mapping != nil ? "a mapping" : "a list" }
            switch n.tag.description {
            case Tag.Name.str.rawValue: return s.style == .plain || s.style == .any ? "'\(s.string)'" : "\"\(s.string)\" (a quoted string)"
            case Tag.Name.null.rawValue: return "no value"
            default: return s.string
            }
        }
        let tag = node.tag.description
        switch kind {
        case .list:
            if let list = node.sequence {
                return try list.map { item in
                    guard let s = item.scalar, item.tag.description == Tag.Name.str.rawValue else { throw refuse("a list of names", describe(item)) }
                    return s.string
                }.joined(separator: " ")
            }
            guard let s = node.scalar, tag == Tag.Name.str.rawValue else { throw refuse("a list of names", describe(node)) }
            return s.string
        case .integer:
            // YAML 1.1's base-60 integers ("1:30") are refused before Yams parses them: its parser traps on one that
            // overflows (fuzzing found `seed: -4444444444444444111:02`), and no key means a duration.
            guard tag == Tag.Name.int.rawValue, node.scalar?.string.contains(":") == false, let v = node.int else {
                throw refuse("an integer", describe(node))
            }
            return "\(v)"
        case .number:
            guard tag == Tag.Name.int.rawValue || tag == Tag.Name.float.rawValue, let v = node.float else { throw refuse("a number", describe(node)) }
            return "\(v)"
        case .flag:
            guard tag == Tag.Name.bool.rawValue, let v = node.bool else { throw refuse("true or false", describe(node)) }
            return "\(v)"
        case .text:
            guard let s = node.scalar, tag != Tag.Name.null.rawValue else { throw refuse("a value", describe(node)) }
            return s.string
        }
    }

    /// The resolved configuration as YAML (every key, defaults filled in; text quoted so it reads back as text).
    public var yaml: String {
        Self.keys.map { key in
            let text = key.format(self)
            switch key.kind {
            case .list: return "\(key.name): [\(text.split(separator: " ").joined(separator: ", "))]"
            case .integer, .number, .flag: return "\(key.name): \(text)"
            case .text: return "\(key.name): \(SafetensorsWriter.jsonString(text))"
            }
        }.joined(separator: "\n") + "\n"
    }
}
