// The forward's 210 layer products (SmolLM2-135M shapes, 30 distinct weights per kind, N = 1024 rows) called
// straight from C with OpenBLAS, three ways alternated in one process (medians):
//   "openblas threads": one call, OpenBLAS's own two threads;
//   "even halves":      rows split 50/50 over two OpenMP threads, single-threaded OpenBLAS each;
//   "adaptive split":   the same, with the first thread's share following the two threads' measured speeds
//                       (what dtrain's Parallel.splitBetweenTwoCores does).
// Compare with PyTorch's MKL on the same products: scripts/bench_pytorch.py --budget.
//   gcc -O2 -fopenmp scripts/openblas_layer_products.c -lopenblas -o /tmp/layer_products
//   OPENBLAS_CORETYPE=SkylakeX /tmp/layer_products [rounds]
#include <cblas.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { ROWS = 1024, HIDDEN = 576, MLP = 1536, KV = 192, LAYERS = 30, MODES = 3 };
static const char *mode_names[MODES] = {"openblas threads", "even halves", "adaptive split"};
static int mode;
static double speed[2] = {1, 1};

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }
static int by_value(const void *a, const void *b) { double x = *(const double *)a, y = *(const double *)b; return (x > y) - (x < y); }

static float *random_matrix(size_t count) {
    float *p = aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64);
    for (size_t i = 0; i < count; i++) p[i] = (rand() / (float)RAND_MAX - 0.5f) * 0.05f;
    return p;
}

// y (ROWS, out) = x (ROWS, in) · Wᵀ + beta · y, as dtrain's BLAS.linear.
static void linear(const float *x, const float *w, float *y, int in, int out, float beta) {
    if (mode == 0) {
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ROWS, out, in, 1, x, in, w, in, beta, y, out);
        return;
    }
    double share = mode == 1 ? 0.5 : speed[0] / (speed[0] + speed[1]);
    int cut = (int)(share * ROWS / 16 + 0.5) * 16;
    cut = cut < 16 ? 16 : cut > ROWS - 16 ? ROWS - 16 : cut;
    double elapsed[2];
#pragma omp parallel num_threads(2)
    {
        int t = omp_get_thread_num(), first = t ? cut : 0, last = t ? ROWS : cut;
        double start = now();
        cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, last - first, out, in, 1, x + (size_t)first * in, in, w, in,
                    beta, y + (size_t)first * out, out);
        elapsed[t] = now() - start;
    }
    double s0 = cut / elapsed[0], s1 = (ROWS - cut) / elapsed[1];
    speed[0] = 0.7 * speed[0] + 0.3 * 2 * s0 / (s0 + s1);
    speed[1] = 0.7 * speed[1] + 0.3 * 2 * s1 / (s0 + s1);
}

int main(int argc, char **argv) {
    int rounds = argc > 1 ? atoi(argv[1]) : 12;
    if (rounds < 1 || rounds > 64) rounds = 12;
    float *q_w[LAYERS], *k_w[LAYERS], *v_w[LAYERS], *o_w[LAYERS], *gate_w[LAYERS], *up_w[LAYERS], *down_w[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        q_w[l] = random_matrix(HIDDEN * HIDDEN); k_w[l] = random_matrix(KV * HIDDEN); v_w[l] = random_matrix(KV * HIDDEN);
        o_w[l] = random_matrix(HIDDEN * HIDDEN); gate_w[l] = random_matrix(MLP * HIDDEN);
        up_w[l] = random_matrix(MLP * HIDDEN); down_w[l] = random_matrix(MLP * HIDDEN);
    }
    float *x = random_matrix(ROWS * HIDDEN), *y = random_matrix(ROWS * HIDDEN), *k = random_matrix(ROWS * KV);
    float *gate = random_matrix(ROWS * MLP), *hidden = random_matrix(ROWS * MLP);
    const double flops = 2.0 * ROWS * LAYERS * (2.0 * HIDDEN * HIDDEN + 2.0 * KV * HIDDEN + 3.0 * MLP * HIDDEN);
    double times[MODES][64];
    for (int round = 0; round <= rounds; round++) {   // round 0 warms up
        for (mode = 0; mode < MODES; mode++) {
            openblas_set_num_threads(mode == 0 ? 2 : 1);
            double start = now();
            for (int l = 0; l < LAYERS; l++) {
                linear(x, q_w[l], y, HIDDEN, HIDDEN, 0); linear(x, k_w[l], k, HIDDEN, KV, 0); linear(x, v_w[l], k, HIDDEN, KV, 0);
                linear(y, o_w[l], x, HIDDEN, HIDDEN, 1);
                linear(x, gate_w[l], gate, HIDDEN, MLP, 0); linear(x, up_w[l], gate, HIDDEN, MLP, 0);
                linear(hidden, down_w[l], x, MLP, HIDDEN, 1);
            }
            if (round > 0) times[mode][round - 1] = now() - start;
        }
    }
    for (mode = 0; mode < MODES; mode++) {
        qsort(times[mode], rounds, sizeof(double), by_value);
        double median = times[mode][rounds / 2];
        printf("%-17s layer products %.3f s (%.1f GFLOP/s, median of %d)\n", mode_names[mode], median, flops / median / 1e9, rounds);
    }
    return 0;
}
