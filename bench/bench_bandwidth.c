/*
 * bench_bandwidth.c - the machine's memory read bandwidth, the bound on
 * token generation: decoding one token streams every weight once.
 *
 *   bench_bandwidth [-t THREADS] [-s MIB] [-m SECONDS] [-f FILE]
 *
 * Each of THREADS threads (default: online CPUs) sums its own slice of a
 * buffer of MIB MiB (default 1024, far beyond the caches) with 64-byte loads,
 * over and over for at least -m seconds (default 2); the figure is bytes read
 * per second of wall time, best pass and mean of the passes. The buffer is
 * written first so that every page is backed by memory, and the sums are
 * printed so that the compiler cannot drop the loads.
 *
 * With -f the buffer is FILE mapped read-only, as the engine maps weights
 * (page-cache pages, 4 KiB page-table entries), instead of anonymous memory:
 * the difference between the two is what the mapping costs.
 *
 * The threads start each pass together at a barrier and the pass ends when
 * the last one finishes, as a matmul split over threads does.
 */
#include <fcntl.h>
#include <pthread.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#if defined(__x86_64__) && defined(__GNUC__)
#include <immintrin.h>
#endif

static double now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + ts.tv_nsec * 1e-9;
}

typedef struct shared {
    const uint64_t *buf;
    size_t n_words; /* 64-bit words in buf */
    int n_threads;
    pthread_barrier_t start, end;
    volatile int stop;
} shared;

typedef struct worker {
    shared *sh;
    int ith;
    uint64_t sum;
} worker;

#if defined(__x86_64__) && defined(__GNUC__)
/* Four independent 256-bit xor chains over 128 bytes per step. AVX2 is
 * enough to saturate memory; the ISA of the loads does not change DRAM
 * speed. */
__attribute__((target("avx2"))) static uint64_t read_slice(const uint64_t *p, size_t n) {
    __m256i a = _mm256_setzero_si256(), b = a, c = a, d = a;
    size_t i = 0;
    for (; i + 16 <= n; i += 16) {
        a = _mm256_xor_si256(a, _mm256_load_si256((const __m256i *)(p + i)));
        b = _mm256_xor_si256(b, _mm256_load_si256((const __m256i *)(p + i + 4)));
        c = _mm256_xor_si256(c, _mm256_load_si256((const __m256i *)(p + i + 8)));
        d = _mm256_xor_si256(d, _mm256_load_si256((const __m256i *)(p + i + 12)));
    }
    a = _mm256_xor_si256(_mm256_xor_si256(a, b), _mm256_xor_si256(c, d));
    uint64_t s = (uint64_t)_mm256_extract_epi64(a, 0) ^ (uint64_t)_mm256_extract_epi64(a, 1) ^
                 (uint64_t)_mm256_extract_epi64(a, 2) ^ (uint64_t)_mm256_extract_epi64(a, 3);
    for (; i < n; i++) s ^= p[i];
    return s;
}
#else
static uint64_t read_slice(const uint64_t *p, size_t n) {
    uint64_t s0 = 0, s1 = 0, s2 = 0, s3 = 0;
    size_t i = 0;
    for (; i + 4 <= n; i += 4) {
        s0 ^= p[i];
        s1 ^= p[i + 1];
        s2 ^= p[i + 2];
        s3 ^= p[i + 3];
    }
    for (; i < n; i++) s0 ^= p[i];
    return s0 ^ s1 ^ s2 ^ s3;
}
#endif

static void *worker_main(void *p) {
    worker *w = p;
    shared *sh = w->sh;
    /* Slices of whole 128-byte steps. */
    size_t steps = sh->n_words / 16;
    size_t b = steps * (size_t)w->ith / (size_t)sh->n_threads * 16;
    size_t e = steps * (size_t)(w->ith + 1) / (size_t)sh->n_threads * 16;
    for (;;) {
        pthread_barrier_wait(&sh->start);
        if (sh->stop) return NULL;
        w->sum += read_slice(sh->buf + b, e - b);
        pthread_barrier_wait(&sh->end);
    }
}

int main(int argc, char **argv) {
    long n_threads = sysconf(_SC_NPROCESSORS_ONLN);
    long mib = 1024;
    double min_seconds = 2.0;
    const char *file = NULL;
    for (int i = 1; i < argc; i++) {
        if (strcmp(argv[i], "-t") == 0 && i + 1 < argc)
            n_threads = atol(argv[++i]);
        else if (strcmp(argv[i], "-s") == 0 && i + 1 < argc)
            mib = atol(argv[++i]);
        else if (strcmp(argv[i], "-m") == 0 && i + 1 < argc)
            min_seconds = atof(argv[++i]);
        else if (strcmp(argv[i], "-f") == 0 && i + 1 < argc)
            file = argv[++i];
        else {
            fprintf(stderr, "usage: %s [-t THREADS] [-s MIB] [-m SECONDS] [-f FILE]\n", argv[0]);
            return 2;
        }
    }
    if (n_threads < 1 || n_threads > 256 || mib < 1 || mib > (1L << 20)) {
        fprintf(stderr, "bench_bandwidth: -t must be 1..256 and -s 1..%ld\n", 1L << 20);
        return 2;
    }

    size_t bytes = (size_t)mib << 20;
    uint64_t *buf;
    if (file != NULL) {
        int fd = open(file, O_RDONLY);
        struct stat st;
        if (fd < 0 || fstat(fd, &st) != 0 || st.st_size < 4096) {
            fprintf(stderr, "bench_bandwidth: %s: cannot open, or smaller than 4 KiB\n", file);
            return 1;
        }
        bytes = (size_t)st.st_size & ~(size_t)4095;
        buf = mmap(NULL, bytes, PROT_READ, MAP_PRIVATE, fd, 0);
        close(fd);
        if (buf == MAP_FAILED) {
            fprintf(stderr, "bench_bandwidth: %s: cannot map\n", file);
            return 1;
        }
        mib = (long)(bytes >> 20);
    } else {
        buf = aligned_alloc(64, bytes);
        if (buf == NULL) {
            fprintf(stderr, "bench_bandwidth: cannot allocate %ld MiB\n", mib);
            return 1;
        }
        for (size_t i = 0; i < bytes / 8; i++) buf[i] = i * 0x9E3779B97F4A7C15ull;
    }

    shared sh = {.buf = buf, .n_words = bytes / 8, .n_threads = (int)n_threads};
    pthread_barrier_init(&sh.start, NULL, (unsigned)n_threads + 1);
    pthread_barrier_init(&sh.end, NULL, (unsigned)n_threads + 1);
    worker *ws = calloc((size_t)n_threads, sizeof *ws);
    pthread_t *th = calloc((size_t)n_threads, sizeof *th);
    if (ws == NULL || th == NULL) return 1;
    for (int i = 0; i < n_threads; i++) {
        ws[i] = (worker){&sh, i, 0};
        pthread_create(&th[i], NULL, worker_main, &ws[i]);
    }

    double best = 0.0, total_time = 0.0, total_bytes = 0.0;
    int passes = 0;
    double t_begin = now();
    while (now() - t_begin < min_seconds || passes < 3) {
        double t0 = now();
        pthread_barrier_wait(&sh.start);
        pthread_barrier_wait(&sh.end);
        double dt = now() - t0;
        double gbs = (double)(sh.n_words / 16 * 128) / dt / 1e9;
        if (gbs > best) best = gbs;
        total_time += dt;
        total_bytes += (double)(sh.n_words / 16 * 128);
        passes++;
    }
    sh.stop = 1;
    pthread_barrier_wait(&sh.start);
    uint64_t sum = 0;
    for (int i = 0; i < n_threads; i++) {
        pthread_join(th[i], NULL);
        sum += ws[i].sum;
    }
    printf("read bandwidth: %.2f GB/s best, %.2f GB/s mean (%ld threads, %ld MiB %s, %d passes, checksum "
           "%016llx)\n",
           best, total_bytes / total_time / 1e9, n_threads, mib, file ? "mapped file" : "anonymous buffer", passes,
           (unsigned long long)sum);
    free(ws);
    free(th);
    if (file != NULL)
        munmap(buf, bytes);
    else
        free(buf);
    return 0;
}
