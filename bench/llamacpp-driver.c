// llamacpp-driver: feed token ids to a GGUF model through libllama (llama.cpp) in ONE llama_decode batch,
// with logits requested for every position, and write them as raw float32 little-endian, positions x n_vocab.
// Used to check that llama.cpp loads the GGUF files rwkv-ts writes and computes the same logits.
//
//   usage: llamacpp-driver MODEL.gguf TOKENS OUT.f32 [n_threads]
//     TOKENS: a JSON file ({"ids": [...]} or a bare [...] array) or any other file, whose bytes are the ids
//             (like fixtures/gguf/tokens-64.bin).
//   exit 0 on success; 2 when the model does not load (llama.cpp's error lines are printed on stderr, prefixed
//   "llama.cpp: "); 3 context; 4 decode; 1 usage / I/O.  Set LLAMACPP_DRIVER_VERBOSE=1 for llama.cpp's full log.
//
// Build against a llama.cpp tree (CPU build, library only):
//   gcc -O2 -o llamacpp-driver bench/llamacpp-driver.c -I $LLAMA/include -I $LLAMA/ggml/include
//       -L $LLAMA/build/bin -lllama -lggml -lggml-base -Wl,-rpath,$LLAMA/build/bin   (one line)
#include "llama.h"

#include <ctype.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static char g_errors[1 << 16];
static size_t g_errors_len = 0;
static int g_verbose = 0;
static enum ggml_log_level g_last_level = GGML_LOG_LEVEL_NONE;

static void log_cb(enum ggml_log_level level, const char *text, void *user) {
    (void)user;
    // GGML_LOG_LEVEL_CONT continues the previous line with the previous level
    if (level == GGML_LOG_LEVEL_CONT) level = g_last_level; else g_last_level = level;
    if (g_verbose) fputs(text, stderr);
    if (level == GGML_LOG_LEVEL_ERROR || level == GGML_LOG_LEVEL_WARN) {
        size_t n = strlen(text);
        if (g_errors_len + n + 1 < sizeof g_errors) {
            memcpy(g_errors + g_errors_len, text, n);
            g_errors_len += n;
            g_errors[g_errors_len] = 0;
        }
    }
}

static void print_errors(void) {
    if (g_errors_len == 0) { fprintf(stderr, "llama.cpp: (no error text was logged)\n"); return; }
    const char *p = g_errors;
    while (*p) {
        const char *e = strchr(p, '\n');
        size_t n = e ? (size_t)(e - p) : strlen(p);
        if (n > 0) fprintf(stderr, "llama.cpp: %.*s\n", (int)n, p);
        p += n + (e ? 1 : 0);
    }
}

static unsigned char *read_file(const char *path, long *size) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    fseek(f, 0, SEEK_END);
    long n = ftell(f);
    fseek(f, 0, SEEK_SET);
    unsigned char *buf = malloc((size_t)n + 1);
    if (!buf || fread(buf, 1, (size_t)n, f) != (size_t)n) { fclose(f); free(buf); return NULL; }
    buf[n] = 0;
    fclose(f);
    *size = n;
    return buf;
}

// Parses the ids: from the "ids" array (or the first [...] array) of a JSON file, else one id per byte.
static llama_token *read_tokens(const char *path, int *count) {
    long size = 0;
    unsigned char *buf = read_file(path, &size);
    if (!buf) return NULL;
    long i = 0;
    while (i < size && isspace(buf[i])) i++;
    llama_token *ids = malloc(sizeof(llama_token) * (size_t)(size + 1));
    int n = 0;
    if (i < size && (buf[i] == '{' || buf[i] == '[')) {
        const char *s = (const char *)buf;
        const char *k = strstr(s, "\"ids\"");
        const char *p = strchr(k ? k : s, '[');
        if (!p) { free(buf); free(ids); return NULL; }
        p++;
        while (*p && *p != ']') {
            while (*p && (isspace((unsigned char)*p) || *p == ',')) p++;
            if (*p == ']' || !*p) break;
            char *end;
            long v = strtol(p, &end, 10);
            if (end == p) { free(buf); free(ids); return NULL; }
            ids[n++] = (llama_token)v;
            p = end;
        }
    } else {
        for (long j = 0; j < size; j++) ids[n++] = buf[j];
    }
    free(buf);
    *count = n;
    return ids;
}

int main(int argc, char **argv) {
    if (argc < 4) {
        fprintf(stderr, "usage: %s MODEL.gguf TOKENS(.json|bytes) OUT.f32 [n_threads]\n", argv[0]);
        return 1;
    }
    const char *model_path = argv[1], *tokens_path = argv[2], *out_path = argv[3];
    int n_threads = argc > 4 ? atoi(argv[4]) : 1;
    g_verbose = getenv("LLAMACPP_DRIVER_VERBOSE") != NULL;

    int n_tokens = 0;
    llama_token *ids = read_tokens(tokens_path, &n_tokens);
    if (!ids || n_tokens <= 0) { fprintf(stderr, "cannot read token ids from %s\n", tokens_path); return 1; }

    llama_log_set(log_cb, NULL);
    llama_backend_init();

    struct llama_model_params mp = llama_model_default_params();
    mp.n_gpu_layers = 0;
    mp.use_mmap = 0;
    struct llama_model *model = llama_model_load_from_file(model_path, mp);
    if (!model) {
        fprintf(stderr, "llama.cpp failed to load %s\n", model_path);
        print_errors();
        return 2;
    }

    const struct llama_vocab *vocab = llama_model_get_vocab(model);
    const int n_vocab = llama_vocab_n_tokens(vocab);

    struct llama_context_params cp = llama_context_default_params();
    cp.n_ctx = 128;
    cp.n_batch = 128;
    cp.n_ubatch = 128;
    cp.n_seq_max = 1;
    cp.n_threads = n_threads;
    cp.n_threads_batch = n_threads;
    cp.no_perf = 1;
    struct llama_context *ctx = llama_init_from_model(model, cp);
    if (!ctx) {
        fprintf(stderr, "llama.cpp failed to create a context for %s\n", model_path);
        print_errors();
        llama_model_free(model);
        return 3;
    }
    if (n_tokens > (int)cp.n_batch) { fprintf(stderr, "too many tokens (%d > %u)\n", n_tokens, cp.n_batch); return 1; }

    struct llama_batch batch = llama_batch_init(n_tokens, 0, 1);
    for (int i = 0; i < n_tokens; i++) {
        if (ids[i] < 0 || ids[i] >= n_vocab) { fprintf(stderr, "token id %d out of range (n_vocab %d)\n", ids[i], n_vocab); return 1; }
        batch.token[i] = ids[i];
        batch.pos[i] = i;
        batch.n_seq_id[i] = 1;
        batch.seq_id[i][0] = 0;
        batch.logits[i] = 1;
    }
    batch.n_tokens = n_tokens;

    int rc = llama_decode(ctx, batch);
    if (rc != 0) {
        fprintf(stderr, "llama_decode failed (%d)\n", rc);
        print_errors();
        return 4;
    }

    FILE *out = fopen(out_path, "wb");
    if (!out) { fprintf(stderr, "cannot write %s\n", out_path); return 1; }
    for (int i = 0; i < n_tokens; i++) {
        const float *row = llama_get_logits_ith(ctx, i);
        if (!row) { fprintf(stderr, "no logits for position %d\n", i); print_errors(); return 4; }
        if (fwrite(row, sizeof(float), (size_t)n_vocab, out) != (size_t)n_vocab) { fprintf(stderr, "write failed\n"); return 1; }
    }
    fclose(out);
    fprintf(stderr, "wrote %s: %d positions x %d logits\n", out_path, n_tokens, n_vocab);

    llama_batch_free(batch);
    llama_free(ctx);
    llama_model_free(model);
    llama_backend_free();
    free(ids);
    return 0;
}
