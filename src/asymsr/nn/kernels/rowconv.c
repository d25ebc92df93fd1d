/*
 * Row-fused CPU convolutions for VDSR-shaped networks (x86-64, AVX2 + FMA, float32, NHWC).
 *
 * asymsr_asym_pair: y = relu(conv1x3(conv3x1(x))) for one Asym_VDSR middle block. Each output
 * row is computed in one pass: the 3x1 output of that row (W x C_mid floats, 128 KiB at W = 512)
 * goes to a per-thread buffer that stays in cache and is consumed at once by the 1x3, so the
 * intermediate image never travels to memory and back.
 * asymsr_conv3x3: y = conv3x3(x) (+ReLU) with the same micro-kernel, for a like-for-like
 * comparison with VDSR.
 *
 * Both use zero padding of one pixel ("same" output size) and no bias. Layouts: x is
 * (N, H, W, C_in) contiguous (PyTorch channels_last); packed weights are (taps, C_in, C_out)
 * with C_out contiguous and a multiple of 16; y is (N, H, W, C_out). Rows are split into
 * `threads` contiguous ranges, one POSIX thread each. Returns 0, or -1 if memory ran out.
 */
#include <immintrin.h>
#include <pthread.h>
#include <stdlib.h>
#include <string.h>

#define OUT_BLOCK 16 /* output channels per micro-kernel call: two AVX2 registers */
#define PIX_BLOCK 6  /* pixels per block micro-kernel: 6 x 2 accumulators + 2 weights + 1 broadcast */
#define MAX_TAPS 9
#define SEGMENT 48 /* pixels of a row processed together (a multiple of PIX_BLOCK) */

/* Micro-kernels: dst[k, 0:16] = sum_t sum_c src[t][k * cin + c] * w[t][c * cout + 0:16] for 6 pixels k
 * (or 1), then ReLU if asked. The 12 accumulators are named variables so that they stay in
 * registers; the instances for VDSR's 64 channels have constant strides, so every load address
 * is a constant offset. */
typedef void (*Kernel)(const float *const *, const float *const *, int, int, int, float *, int);

#define ACCUMULATE(k)                                                                        \
    {                                                                                        \
        const __m256 b = _mm256_broadcast_ss(s + (size_t)(k) * in_stride + c);                 \
        acc##k##a = _mm256_fmadd_ps(b, w0, acc##k##a);                                       \
        acc##k##b = _mm256_fmadd_ps(b, w1, acc##k##b);                                       \
    }
#define STORE(k)                                                                             \
    if (relu) {                                                                              \
        acc##k##a = _mm256_max_ps(acc##k##a, zero);                                          \
        acc##k##b = _mm256_max_ps(acc##k##b, zero);                                          \
    }                                                                                        \
    _mm256_storeu_ps(dst + (size_t)(k) * out_stride, acc##k##a);                             \
    _mm256_storeu_ps(dst + (size_t)(k) * out_stride + 8, acc##k##b);

#define BLOCK_KERNEL(NAME, CIN, COUT)                                                        \
    static void NAME(const float *const *src, const float *const *w, int ntaps, int cin,    \
                     int cout, float *dst, int relu) {                                       \
        (void)cin;                                                                           \
        (void)cout;                                                                          \
        const int in_stride = (CIN), out_stride = (COUT);                                    \
        __m256 acc0a = _mm256_setzero_ps(), acc0b = acc0a, acc1a = acc0a, acc1b = acc0a;     \
        __m256 acc2a = acc0a, acc2b = acc0a, acc3a = acc0a, acc3b = acc0a;                   \
        __m256 acc4a = acc0a, acc4b = acc0a, acc5a = acc0a, acc5b = acc0a;                   \
        for (int t = 0; t < ntaps; ++t) {                                                    \
            const float *s = src[t];                                                         \
            const float *wt = w[t];                                                          \
            for (int c = 0; c < in_stride; ++c) {                                             \
                const __m256 w0 = _mm256_loadu_ps(wt + (size_t)c * out_stride);                \
                const __m256 w1 = _mm256_loadu_ps(wt + (size_t)c * out_stride + 8);            \
                ACCUMULATE(0) ACCUMULATE(1) ACCUMULATE(2) ACCUMULATE(3) ACCUMULATE(4) ACCUMULATE(5) \
            }                                                                                \
        }                                                                                    \
        const __m256 zero = _mm256_setzero_ps();                                             \
        STORE(0) STORE(1) STORE(2) STORE(3) STORE(4) STORE(5)                                \
    }

#define SINGLE_KERNEL(NAME, CIN, COUT)                                                       \
    static void NAME(const float *const *src, const float *const *w, int ntaps, int cin,    \
                     int cout, float *dst, int relu) {                                       \
        (void)cin;                                                                           \
        (void)cout;                                                                          \
        const int in_stride = (CIN), out_stride = (COUT);                                    \
        __m256 acc0a = _mm256_setzero_ps(), acc0b = acc0a;                                   \
        for (int t = 0; t < ntaps; ++t) {                                                    \
            const float *s = src[t];                                                         \
            const float *wt = w[t];                                                          \
            for (int c = 0; c < in_stride; ++c) {                                             \
                const __m256 w0 = _mm256_loadu_ps(wt + (size_t)c * out_stride);                \
                const __m256 w1 = _mm256_loadu_ps(wt + (size_t)c * out_stride + 8);            \
                ACCUMULATE(0)                                                                \
            }                                                                                \
        }                                                                                    \
        const __m256 zero = _mm256_setzero_ps();                                             \
        STORE(0)                                                                             \
    }

BLOCK_KERNEL(block_64, 64, 64)
BLOCK_KERNEL(block_any, cin, cout)
SINGLE_KERNEL(single_64, 64, 64)
SINGLE_KERNEL(single_any, cin, cout)

/* One output row: dst[p, :] = sum_t rows[t][p, :] @ weights[t] for p < npix (rows[t] already shifted).
 * The row is done in segments of SEGMENT pixels, and within a segment one block of 16 output channels
 * at a time, so that the segment's inputs and one weight block stay in L1/L2 while they are reused. */
static void conv_row(const float *const *rows, const float *const *weights, int ntaps, int npix, int cin, int cout,
                     float *dst, int relu) {
    const float *src[MAX_TAPS];
    const float *w[MAX_TAPS];
    const int vdsr_width = cin == 64 && cout == 64;
    const Kernel block = vdsr_width ? block_64 : block_any, single = vdsr_width ? single_64 : single_any;
    for (int start = 0; start < npix; start += SEGMENT) {
        const int end = start + SEGMENT < npix ? start + SEGMENT : npix;
        for (int ob = 0; ob < cout; ob += OUT_BLOCK) {
            for (int t = 0; t < ntaps; ++t) w[t] = weights[t] + ob;
            int p = start;
            for (; p + PIX_BLOCK <= end; p += PIX_BLOCK) {
                for (int t = 0; t < ntaps; ++t) src[t] = rows[t] + (size_t)p * cin;
                block(src, w, ntaps, cin, cout, dst + (size_t)p * cout + ob, relu);
            }
            for (; p < end; ++p) {
                for (int t = 0; t < ntaps; ++t) src[t] = rows[t] + (size_t)p * cin;
                single(src, w, ntaps, cin, cout, dst + (size_t)p * cout + ob, relu);
            }
        }
    }
}

typedef struct {
    const float *x, *w1, *w2; /* w2 unused by conv3x3 */
    float *y;
    long n, h, w, cin, cmid, cout; /* cmid unused by conv3x3 */
    int relu;                      /* conv3x3 only; the pair always applies ReLU */
    long begin, end;               /* rows of the flattened (N * H) range for this thread */
    int status;
} Job;

static void *pair_rows(void *arg) {
    Job *job = (Job *)arg;
    const long h = job->h, w = job->w, cin = job->cin, cmid = job->cmid, cout = job->cout;
    float *mid = calloc((size_t)(w + 2) * cmid, sizeof(float)); /* one 3x1 output row, zero border pixels */
    if (!mid) {
        job->status = -1;
        return NULL;
    }
    for (long r = job->begin; r < job->end; ++r) {
        const long img = r / h, row = r % h;
        const float *rows[3], *weights[3];
        int taps = 0;
        for (int dy = -1; dy <= 1; ++dy) {
            if (row + dy < 0 || row + dy >= h) continue;
            rows[taps] = job->x + ((img * h + row + dy) * w) * cin;
            weights[taps] = job->w1 + (size_t)(dy + 1) * cin * cmid;
            ++taps;
        }
        conv_row(rows, weights, taps, (int)w, (int)cin, (int)cmid, mid + cmid, 0);
        const float *rows2[3] = {mid, mid + cmid, mid + 2 * cmid};
        const float *weights2[3] = {job->w2, job->w2 + (size_t)cmid * cout, job->w2 + (size_t)2 * cmid * cout};
        conv_row(rows2, weights2, 3, (int)w, (int)cmid, (int)cout, job->y + ((img * h + row) * w) * cout, 1);
    }
    free(mid);
    return NULL;
}

static void *full_rows(void *arg) {
    Job *job = (Job *)arg;
    const long h = job->h, w = job->w, cin = job->cin, cout = job->cout;
    float *padded = calloc((size_t)3 * (w + 2) * cin, sizeof(float)); /* rows above, at, below; zero borders */
    if (!padded) {
        job->status = -1;
        return NULL;
    }
    for (long r = job->begin; r < job->end; ++r) {
        const long img = r / h, row = r % h;
        const float *rows[MAX_TAPS], *weights[MAX_TAPS];
        int taps = 0;
        for (int dy = -1; dy <= 1; ++dy) {
            if (row + dy < 0 || row + dy >= h) continue;
            float *buf = padded + (size_t)(dy + 1) * (w + 2) * cin;
            memcpy(buf + cin, job->x + ((img * h + row + dy) * w) * cin, sizeof(float) * w * cin);
            for (int dx = 0; dx < 3; ++dx) {
                rows[taps] = buf + (size_t)dx * cin;
                weights[taps] = job->w1 + (size_t)((dy + 1) * 3 + dx) * cin * cout;
                ++taps;
            }
        }
        conv_row(rows, weights, taps, (int)w, (int)cin, (int)cout, job->y + ((img * h + row) * w) * cout, job->relu);
    }
    free(padded);
    return NULL;
}

/* Run `body` over rows [0, n * h) split into `threads` ranges; the calling thread takes the first. */
static int run_parallel(Job base, int threads, void *(*body)(void *)) {
    const long total = base.n * base.h;
    if (threads < 1) threads = 1;
    if (threads > total) threads = (int)(total > 0 ? total : 1);
    Job *jobs = calloc((size_t)threads, sizeof(Job));
    pthread_t *ids = calloc((size_t)threads, sizeof(pthread_t));
    if (!jobs || !ids) {
        free(jobs);
        free(ids);
        return -1;
    }
    const long chunk = (total + threads - 1) / threads;
    int started = 1, status = 0;
    for (int i = 0; i < threads; ++i) {
        jobs[i] = base;
        jobs[i].begin = i * chunk < total ? i * chunk : total;
        jobs[i].end = (i + 1) * chunk < total ? (i + 1) * chunk : total;
        jobs[i].status = 0;
    }
    for (int i = 1; i < threads; ++i, ++started)
        if (pthread_create(&ids[i], NULL, body, &jobs[i]) != 0) break;
    if (started < threads) /* could not start them all: the caller does the rest itself */
        for (int i = started; i < threads; ++i) body(&jobs[i]);
    body(&jobs[0]);
    for (int i = 1; i < started; ++i) pthread_join(ids[i], NULL);
    for (int i = 0; i < threads; ++i)
        if (jobs[i].status) status = jobs[i].status;
    free(jobs);
    free(ids);
    return status;
}

int asymsr_asym_pair(const float *x, long n, long h, long w, long cin, const float *w1, long cmid, const float *w2,
                     long cout, float *y, int threads) {
    Job job = {x, w1, w2, y, n, h, w, cin, cmid, cout, 1, 0, 0, 0};
    return run_parallel(job, threads, pair_rows);
}

int asymsr_conv3x3(const float *x, long n, long h, long w, long cin, const float *wpk, long cout, int relu, float *y,
                   int threads) {
    Job job = {x, wpk, NULL, y, n, h, w, cin, 0, cout, relu, 0, 0, 0};
    return run_parallel(job, threads, full_rows);
}
