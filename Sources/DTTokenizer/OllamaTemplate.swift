// The chat template of each recognised family as an Ollama Modelfile TEMPLATE (Go text/template over
// .System and .Messages), producing the same text as ChatTemplate.render with a generation prompt, and the
// end-of-turn markers Ollama should stop at.
extension ChatTemplate {
    public var ollamaTemplate: String {
        switch family {
        case .chatml:
            return """
            {{- if .System }}<|im_start|>system
            {{ .System }}<|im_end|>
            {{ end }}{{- range .Messages }}{{- if ne .Role "system" }}<|im_start|>{{ .Role }}
            {{ .Content }}<|im_end|>
            {{ end }}{{- end }}<|im_start|>assistant

            """
        case .llama3:
            return """
            {{- if .System }}<|start_header_id|>system<|end_header_id|>

            {{ .System }}<|eot_id|>{{ end }}{{- range .Messages }}{{- if ne .Role "system" }}<|start_header_id|>{{ .Role }}<|end_header_id|>

            {{ .Content }}<|eot_id|>{{ end }}{{- end }}<|start_header_id|>assistant<|end_header_id|>


            """
        case .llama2:
            return """
            {{- range $i, $m := .Messages }}{{- if eq $m.Role "user" }}[INST] {{ if and (eq $i 0) $.System }}<<SYS>>
            {{ $.System }}
            <</SYS>>

            {{ end }}{{ $m.Content }} [/INST]{{- else if eq $m.Role "assistant" }} {{ $m.Content }}</s>{{- end }}{{- end }}
            """
        case .gemma:
            return """
            {{- range $i, $m := .Messages }}{{- if eq $m.Role "user" }}<start_of_turn>user
            {{ if and (eq $i 0) $.System }}{{ $.System }}

            {{ end }}{{ $m.Content }}<end_of_turn>
            {{ else if eq $m.Role "assistant" }}<start_of_turn>model
            {{ $m.Content }}<end_of_turn>
            {{ end }}{{- end }}<start_of_turn>model

            """
        case .phi3, .zephyr:
            let end = family == .phi3 ? "<|end|>" : "</s>"
            return """
            {{- if .System }}<|system|>
            {{ .System }}\(end)
            {{ end }}{{- range .Messages }}{{- if ne .Role "system" }}<|{{ .Role }}|>
            {{ .Content }}\(end)
            {{ end }}{{- end }}<|assistant|>

            """
        }
    }

    /// Markers that end an assistant turn.
    public var ollamaStops: [String] {
        switch family {
        case .chatml: ["<|im_end|>"]
        case .llama3: ["<|eot_id|>"]
        case .llama2: ["[INST]", "</s>"]
        case .gemma: ["<end_of_turn>"]
        case .phi3: ["<|end|>"]
        case .zephyr: ["</s>"]
        }
    }
}
