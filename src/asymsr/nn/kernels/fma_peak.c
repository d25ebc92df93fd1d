/*
 * Peak FP32 throughput probe (x86-64, AVX2 + FMA): each of `threads` POSIX threads runs
 * `iterations` rounds of 10 independent 8-wide fused multiply-adds (160 FLOPs per round), enough
 * independent chains to keep both FMA pipes of a core busy. Returns the wall time in seconds,
 * or -1 if a thread could not be started. The sum of the results is stored in *sink so that
 * the compiler cannot drop the work.
 */
#include <immintrin.h>
#include <pthread.h>
#include <time.h>

typedef struct {
    long iterations;
    float result;
} Probe;

static void *fma_rounds(void *arg) {
    Probe *probe = (Probe *)arg;
    const __m256 scale = _mm256_set1_ps(0.999999f), shift = _mm256_set1_ps(1e-6f);
    __m256 a0 = _mm256_set1_ps(1), a1 = _mm256_set1_ps(2), a2 = _mm256_set1_ps(3), a3 = _mm256_set1_ps(4);
    __m256 a4 = _mm256_set1_ps(5), a5 = _mm256_set1_ps(6), a6 = _mm256_set1_ps(7), a7 = _mm256_set1_ps(8);
    __m256 a8 = _mm256_set1_ps(9), a9 = _mm256_set1_ps(10);
    for (long n = 0; n < probe->iterations; ++n) {
        a0 = _mm256_fmadd_ps(a0, scale, shift);
        a1 = _mm256_fmadd_ps(a1, scale, shift);
        a2 = _mm256_fmadd_ps(a2, scale, shift);
        a3 = _mm256_fmadd_ps(a3, scale, shift);
        a4 = _mm256_fmadd_ps(a4, scale, shift);
        a5 = _mm256_fmadd_ps(a5, scale, shift);
        a6 = _mm256_fmadd_ps(a6, scale, shift);
        a7 = _mm256_fmadd_ps(a7, scale, shift);
        a8 = _mm256_fmadd_ps(a8, scale, shift);
        a9 = _mm256_fmadd_ps(a9, scale, shift);
    }
    __m256 sum = _mm256_add_ps(_mm256_add_ps(_mm256_add_ps(a0, a1), _mm256_add_ps(a2, a3)),
                               _mm256_add_ps(_mm256_add_ps(a4, a5), _mm256_add_ps(a6, a7)));
    sum = _mm256_add_ps(sum, _mm256_add_ps(a8, a9));
    float lanes[8];
    _mm256_storeu_ps(lanes, sum);
    probe->result = lanes[0];
    return NULL;
}

double asymsr_fma_seconds(long iterations, int threads, float *sink) {
    enum { MAX_THREADS = 256 };
    Probe probes[MAX_THREADS];
    pthread_t ids[MAX_THREADS];
    if (threads < 1 || threads > MAX_THREADS) return -1.0;
    struct timespec start, end;
    clock_gettime(CLOCK_MONOTONIC, &start);
    int started = 1;
    for (int i = 0; i < threads; ++i) probes[i].iterations = iterations;
    for (int i = 1; i < threads; ++i, ++started)
        if (pthread_create(&ids[i], NULL, fma_rounds, &probes[i]) != 0) break;
    fma_rounds(&probes[0]);
    for (int i = 1; i < started; ++i) pthread_join(ids[i], NULL);
    clock_gettime(CLOCK_MONOTONIC, &end);
    if (started < threads) return -1.0;
    float total = 0.0f;
    for (int i = 0; i < threads; ++i) total += probes[i].result;
    *sink = total;
    return (double)(end.tv_sec - start.tv_sec) + 1e-9 * (double)(end.tv_nsec - start.tv_nsec);
}
