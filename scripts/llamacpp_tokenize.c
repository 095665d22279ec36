// llama.cpp's tokenizer on a GGUF's vocabulary, for make_spm_tokenizer_fixtures.py --llama-cpp (not part of
// the build). Reads texts separated by 0x1E (record separator) on stdin; prints one line of ids per text.
//   cc -O1 -o llamacpp_tokenize scripts/llamacpp_tokenize.c -I SRC/include -I SRC/ggml/include -L LIB -lllama -Wl,-rpath,LIB
//   ./llamacpp_tokenize vocab.gguf ADD_SPECIAL(0|1) < texts
#include "llama.h"
#include <stdio.h>
#include <stdlib.h>

int main(int argc, char **argv) {
    if (argc != 3) { fprintf(stderr, "usage: %s vocab.gguf add_special(0|1) < texts\n", argv[0]); return 2; }
    llama_backend_init();
    struct llama_model_params params = llama_model_default_params();
    params.vocab_only = true;
    struct llama_model *model = llama_model_load_from_file(argv[1], params);
    if (!model) { fprintf(stderr, "cannot load %s\n", argv[1]); return 1; }
    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int add_special = atoi(argv[2]);
    static char text[1 << 22];
    const size_t n = fread(text, 1, sizeof text, stdin);
    static llama_token ids[1 << 16];
    size_t start = 0;
    for (size_t i = 0; i <= n; i++) {
        if (i < n && text[i] != 0x1E) continue;
        const int count = llama_tokenize(vocab, text + start, (int)(i - start), ids, 1 << 16, add_special, true);
        if (count < 0) { fprintf(stderr, "text at byte %zu: more than %d tokens\n", start, 1 << 16); return 1; }
        for (int j = 0; j < count; j++) printf(j ? " %d" : "%d", ids[j]);
        printf("\n");
        start = i + 1;
    }
    llama_model_free(model);
    return 0;
}
