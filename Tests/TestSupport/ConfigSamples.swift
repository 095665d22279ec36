// Values for the configuration-table tests: for any key, a valid value other than its default, found from what
// its table entry says (its YAML type, choices and default) and checked by the entry itself, so a new key gets
// one without a list to extend here.
import DTTraining

extension ConfigKey {
    /// A value this key accepts that differs from its default, as flag text; nil if none of the candidates fits
    /// (a test failure: extend the candidates).
    public var sampleText: String? {
        let base = defaultText
        let candidates: [String]
        switch kind {
        case .integer: candidates = Int(base).map { ["\($0 + 1)", "\($0 - 1)"] } ?? []
        case .number: candidates = Double(base).map { d in [d / 2, d + 0.25, 0.5].map { "\($0)" } } ?? []
        case .flag: candidates = [base == "true" ? "false" : "true"]
        case .list: candidates = [choices.prefix(2).joined(separator: ",")]
        case .text: candidates = choices.isEmpty ? ["sample/\(name)"] : choices
        }
        return candidates.first { text in
            var config = TrainConfig()
            return (try? config.set(name, text, source: "sample")) != nil && config.value(name) != base
        }
    }

    /// `sampleText` as a YAML value (a list in brackets).
    public var sampleYAML: String? {
        sampleText.map { kind == .list ? "[\($0.split(separator: ",").joined(separator: ", "))]" : $0 }
    }
}
