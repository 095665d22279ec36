// oneDNN's matmul primitive for bf16 A, B and fp32 C, one primitive per (n, k, layout) with the row count
// given at each run (so every batch shape shares it): B's memory object is made once and gets the caller's
// pointer at each run, A's and C's are small host objects of that run's row count, and the scratchpad is the
// primitive's own (user-managed).
#include "CBF16.h"
#include <oneapi/dnnl/dnnl.h>
#include <oneapi/dnnl/dnnl_debug.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

extern void omp_set_num_threads(int);

struct dt_matmul {
    dnnl_primitive_t primitive;
    dnnl_memory_desc_t a_md, c_md;   // with a runtime row count: completed at each run
    dnnl_memory_t b, scratchpad;
    void *scratch;
};

static dnnl_engine_t engine;
static dnnl_stream_t stream;
static dnnl_status_t engine_status = dnnl_success;
static pthread_once_t once = PTHREAD_ONCE_INIT;

static void init_engine(void) {
    engine_status = dnnl_engine_create(&engine, dnnl_cpu, 0);
    if (engine_status == dnnl_success) engine_status = dnnl_stream_create(&stream, engine, dnnl_stream_default_flags);
}

#define CHECK(call) do { status = (call); if (status != dnnl_success) { where = #call; goto fail; } } while (0)

dt_matmul *dt_matmul_create(long n, long k, int trans_a, long lda, int trans_b, long ldb, long ldc,
                            int accumulate, char *impl, int impl_capacity, char *error, int error_capacity) {
    pthread_once(&once, init_engine);
    dnnl_status_t status = engine_status;
    const char *where = "dnnl_engine_create";
    dnnl_primitive_attr_t attr = NULL;
    dnnl_post_ops_t post_ops = NULL;
    dnnl_primitive_desc_t pd = NULL;
    dt_matmul *mm = calloc(1, sizeof *mm);
    if (status != dnnl_success || !mm) goto fail;

    dnnl_memory_desc_t a_md, b_md, c_md;
    dnnl_dim_t rows = DNNL_RUNTIME_DIM_VAL;
    dnnl_dims_t a_dims = {rows, k}, b_dims = {k, n}, c_dims = {rows, n};
    dnnl_dims_t a_strides = {trans_a ? 1 : lda, trans_a ? lda : 1};
    dnnl_dims_t b_strides = {trans_b ? 1 : ldb, trans_b ? ldb : 1};
    dnnl_dims_t c_strides = {ldc, 1};
    CHECK(dnnl_memory_desc_init_by_strides(&a_md, 2, a_dims, dnnl_bf16, a_strides));
    CHECK(dnnl_memory_desc_init_by_strides(&b_md, 2, b_dims, dnnl_bf16, b_strides));
    CHECK(dnnl_memory_desc_init_by_strides(&c_md, 2, c_dims, dnnl_f32, c_strides));
    dnnl_matmul_desc_t desc;
    CHECK(dnnl_matmul_desc_init(&desc, &a_md, &b_md, NULL, &c_md));
    CHECK(dnnl_primitive_attr_create(&attr));
    CHECK(dnnl_primitive_attr_set_scratchpad_mode(attr, dnnl_scratchpad_mode_user));
    if (accumulate) {
        CHECK(dnnl_post_ops_create(&post_ops));
        CHECK(dnnl_post_ops_append_sum(post_ops, 1.0f));
        CHECK(dnnl_primitive_attr_set_post_ops(attr, post_ops));
    }
    CHECK(dnnl_primitive_desc_create(&pd, &desc, attr, engine, NULL));
    CHECK(dnnl_primitive_create(&mm->primitive, pd));
    mm->a_md = a_md; mm->c_md = c_md;
    CHECK(dnnl_memory_create(&mm->b, &b_md, engine, DNNL_MEMORY_NONE));
    const dnnl_memory_desc_t *scratch_md = dnnl_primitive_desc_query_md(pd, dnnl_query_scratchpad_md, 0);
    size_t scratch_bytes = scratch_md ? dnnl_memory_desc_get_size(scratch_md) : 0;
    if (scratch_bytes > 0) {
        mm->scratch = aligned_alloc(64, (scratch_bytes + 63) / 64 * 64);
        if (!mm->scratch) { status = dnnl_out_of_memory; where = "aligned_alloc"; goto fail; }
        CHECK(dnnl_memory_create(&mm->scratchpad, scratch_md, engine, mm->scratch));
    }
    const char *name = NULL;
    if (impl && impl_capacity > 0) {
        if (dnnl_primitive_desc_query(pd, dnnl_query_impl_info_str, 0, &name) == dnnl_success && name)
            snprintf(impl, (size_t)impl_capacity, "%s", name);
        else
            snprintf(impl, (size_t)impl_capacity, "unknown");
    }
    dnnl_primitive_desc_destroy(pd);
    dnnl_primitive_attr_destroy(attr);
    if (post_ops) dnnl_post_ops_destroy(post_ops);
    return mm;

fail:
    if (error && error_capacity > 0)
        snprintf(error, (size_t)error_capacity, "%s: %s", where, dnnl_status2str(status));
    if (pd) dnnl_primitive_desc_destroy(pd);
    if (attr) dnnl_primitive_attr_destroy(attr);
    if (post_ops) dnnl_post_ops_destroy(post_ops);
    dt_matmul_destroy(mm);
    return NULL;
}

int dt_matmul_run(dt_matmul *mm, long m, const uint16_t *a, const uint16_t *b, float *c) {
    dnnl_status_t status;
    dnnl_memory_t a_mem = NULL, c_mem = NULL;
    dnnl_memory_desc_t a_md = mm->a_md, c_md = mm->c_md;
    a_md.dims[0] = m; c_md.dims[0] = m;
    a_md.padded_dims[0] = m; c_md.padded_dims[0] = m;
    if ((status = dnnl_memory_create(&a_mem, &a_md, engine, (void *)a)) != dnnl_success) goto done;
    if ((status = dnnl_memory_create(&c_mem, &c_md, engine, c)) != dnnl_success) goto done;
    if ((status = dnnl_memory_set_data_handle(mm->b, (void *)b)) != dnnl_success) goto done;
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, a_mem}, {DNNL_ARG_WEIGHTS, mm->b}, {DNNL_ARG_DST, c_mem},
                               {DNNL_ARG_SCRATCHPAD, mm->scratchpad}};
    if ((status = dnnl_primitive_execute(mm->primitive, stream, mm->scratchpad ? 4 : 3, args)) != dnnl_success) goto done;
    status = dnnl_stream_wait(stream);
done:
    if (a_mem) dnnl_memory_destroy(a_mem);
    if (c_mem) dnnl_memory_destroy(c_mem);
    return (int)status;
}

void dt_matmul_destroy(dt_matmul *mm) {
    if (!mm) return;
    if (mm->primitive) dnnl_primitive_destroy(mm->primitive);
    if (mm->b) dnnl_memory_destroy(mm->b);
    if (mm->scratchpad) dnnl_memory_destroy(mm->scratchpad);
    free(mm->scratch);
    free(mm);
}

void dt_set_onednn_threads(int n) { omp_set_num_threads(n > 0 ? n : 1); }
