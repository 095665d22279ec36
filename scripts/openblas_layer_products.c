// The forward's 210 layer products (SmolLM2-135M shapes, 30 distinct weights per kind, N = 1024 rows) called
// straight from C with OpenBLAS, to check that dtrain's products run at OpenBLAS's own speed and to set
// OpenBLAS against PyTorch's MKL on identical work (scripts/bench_pytorch.py --budget prints MKL's side).
//   gcc -O2 scripts/openblas_layer_products.c -lopenblas -o /tmp/layer_products
//   OPENBLAS_CORETYPE=SkylakeX OPENBLAS_NUM_THREADS=2 /tmp/layer_products
#include <cblas.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>

enum { ROWS = 1024, HIDDEN = 576, MLP = 1536, KV = 192, LAYERS = 30 };

static double now(void) { struct timespec t; clock_gettime(CLOCK_MONOTONIC, &t); return t.tv_sec + t.tv_nsec * 1e-9; }

static float *random_matrix(size_t count) {
    float *p = aligned_alloc(64, (count * sizeof(float) + 63) / 64 * 64);
    for (size_t i = 0; i < count; i++) p[i] = (rand() / (float)RAND_MAX - 0.5f) * 0.05f;
    return p;
}

// y (ROWS, out) = x (ROWS, in) · Wᵀ + beta · y, as dtrain's BLAS.linear.
static void linear(const float *x, const float *w, float *y, int in, int out, float beta) {
    cblas_sgemm(CblasRowMajor, CblasNoTrans, CblasTrans, ROWS, out, in, 1.0f, x, in, w, in, beta, y, out);
}

int main(void) {
    float *q_w[LAYERS], *k_w[LAYERS], *v_w[LAYERS], *o_w[LAYERS], *gate_w[LAYERS], *up_w[LAYERS], *down_w[LAYERS];
    for (int l = 0; l < LAYERS; l++) {
        q_w[l] = random_matrix(HIDDEN * HIDDEN); k_w[l] = random_matrix(KV * HIDDEN); v_w[l] = random_matrix(KV * HIDDEN);
        o_w[l] = random_matrix(HIDDEN * HIDDEN); gate_w[l] = random_matrix(MLP * HIDDEN);
        up_w[l] = random_matrix(MLP * HIDDEN); down_w[l] = random_matrix(MLP * HIDDEN);
    }
    float *x = random_matrix(ROWS * HIDDEN), *y = random_matrix(ROWS * HIDDEN), *k = random_matrix(ROWS * KV);
    float *gate = random_matrix(ROWS * MLP), *hidden = random_matrix(ROWS * MLP);
    const double flops = 2.0 * ROWS * LAYERS * (2.0 * HIDDEN * HIDDEN + 2.0 * KV * HIDDEN + 3.0 * MLP * HIDDEN);
    double times[8];
    for (int iteration = 0; iteration < 8; iteration++) {
        double start = now();
        for (int l = 0; l < LAYERS; l++) {
            linear(x, q_w[l], y, HIDDEN, HIDDEN, 0); linear(x, k_w[l], k, HIDDEN, KV, 0); linear(x, v_w[l], k, HIDDEN, KV, 0);
            linear(y, o_w[l], x, HIDDEN, HIDDEN, 1);
            linear(x, gate_w[l], gate, HIDDEN, MLP, 0); linear(x, up_w[l], gate, HIDDEN, MLP, 0);
            linear(hidden, down_w[l], x, MLP, HIDDEN, 1);
        }
        times[iteration] = now() - start;
    }
    for (int i = 1; i < 8; i++) for (int j = i; j > 1 && times[j] < times[j - 1]; j--) {
        double t = times[j]; times[j] = times[j - 1]; times[j - 1] = t;
    }
    double median = times[4];   // of the 7 after the warm-up
    printf("openblas layer products %.3f s (%.1f GFLOP/s, median of 7)\n", median, flops / median / 1e9);
    return 0;
}
