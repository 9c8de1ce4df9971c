// rwkv.cpp side by side with rwkv-ts (`npm run bench -- --rwkvcpp /path/to/librwkv.so`): loads an
// rwkv.cpp model file, generates N tokens one at a time with rwkv_eval (state and logits out, as a
// sampler needs them), feeds a prompt with rwkv_eval_sequence_in_chunks, and prints one JSON line.
// The bench compiles it with the system cc against the given library and its rwkv.h; nothing of
// rwkv.cpp is part of this repository.
//   rwkvcpp-driver MODEL.bin THREADS GEN_TOKENS PROMPT_TOKENS
// Token ids are the ones bench/run-one.ts feeds: (i·7919 + 13) mod n_vocab.
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>

#include "rwkv.h"

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

int main(int argc, char ** argv) {
    if (argc < 5) {
        fprintf(stderr, "usage: %s MODEL.bin THREADS GEN_TOKENS PROMPT_TOKENS\n", argv[0]);
        return 2;
    }
    const char * path = argv[1];
    const uint32_t threads = (uint32_t)atoi(argv[2]);
    const int gen = atoi(argv[3]);
    const int prompt = atoi(argv[4]);

    double t0 = now();
    struct rwkv_context * ctx = rwkv_init_from_file(path, threads, 0);
    if (ctx == NULL) {
        fprintf(stderr, "rwkv_init_from_file failed for %s\n", path);
        return 1;
    }
    const double load_seconds = now() - t0;
    const size_t vocab = rwkv_get_n_vocab(ctx);
    const size_t state_len = rwkv_get_state_len(ctx);
    float * state = malloc(state_len * sizeof(float));
    float * logits = malloc(rwkv_get_logits_len(ctx) * sizeof(float));
    const int n_ids = (gen > prompt ? gen : prompt) + 8;
    uint32_t * ids = malloc((size_t)n_ids * sizeof(uint32_t));
    for (int i = 0; i < n_ids; i++) ids[i] = (uint32_t)(((int64_t)i * 7919 + 13) % (int64_t)vocab);

    // Warm-up: four tokens one at a time (as run-one.ts does), and the sequence graph once.
    rwkv_init_state(ctx, state);
    for (int i = 0; i < 4; i++) {
        if (!rwkv_eval(ctx, ids[i], state, state, logits)) return 1;
    }
    if (prompt > 0) {
        rwkv_init_state(ctx, state);
        if (!rwkv_eval_sequence_in_chunks(ctx, ids, (size_t)prompt, 64, state, state, logits)) return 1;
    }

    // Generation: one token at a time, state and logits out.
    double * stamps = malloc((size_t)(gen + 1) * sizeof(double));
    rwkv_init_state(ctx, state);
    stamps[0] = now();
    for (int i = 0; i < gen; i++) {
        if (!rwkv_eval(ctx, ids[i], state, state, logits)) return 1;
        stamps[i + 1] = now();
    }
    const double gen_seconds = stamps[gen] - stamps[0];
    const int window = gen < 16 ? gen : 16;
    double best = 1e30;
    for (int i = 0; i + window <= gen; i++) {
        const double d = stamps[i + window] - stamps[i];
        if (d < best) best = d;
    }

    // Prompt: rwkv.cpp's sequence mode in chunks of 64 tokens, logits of the last position.
    double prompt_rate = 0;
    if (prompt > 0) {
        rwkv_init_state(ctx, state);
        const double t = now();
        if (!rwkv_eval_sequence_in_chunks(ctx, ids, (size_t)prompt, 64, state, state, logits)) return 1;
        prompt_rate = prompt / (now() - t);
    }

    struct rusage usage;
    getrusage(RUSAGE_SELF, &usage);
    printf(
        "{\"threads\":%u,\"loadSeconds\":%.4f,\"generateTokensPerSecond\":%.3f,\"generateBestWindowTokensPerSecond\":%.3f,"
        "\"generateTokens\":%d,\"promptTokensPerSecond\":%.3f,\"promptTokens\":%d,\"peakRssBytes\":%ld,\"systemInfo\":\"%s\"}\n",
        threads, load_seconds, gen / gen_seconds, window / best, gen, prompt_rate, prompt, (long)usage.ru_maxrss * 1024L,
        rwkv_get_system_info_string());
    rwkv_free(ctx);
    free(state);
    free(logits);
    free(ids);
    free(stamps);
    return 0;
}
