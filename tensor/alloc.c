/* Tensor data allocation with a size-class cache.
 *
 * A training step frees and reallocates the same sizes every iteration;
 * returning them to malloc makes glibc grow and trim the heap (system calls)
 * each time. Freed blocks are kept per size class and reused instead, so a
 * steady-state loop allocates nothing from the system. Classes are four per
 * power of two (at most 25% slack). Under AddressSanitizer the cache is off so
 * use-after-free on tensor data is still caught. */
#include "tensor/tensor.h"
#include "tensor/tensor_internal.h"

#include <stdlib.h>

#if defined(__SANITIZE_ADDRESS__)
#define MN_CACHE_ENABLED 0
#else
#define MN_CACHE_ENABLED 1
#endif

#define N_CLASSES 256

typedef struct block {
    struct block *next;
} block;

/* per thread: a block freed by another thread than the one that allocated it joins the freeing
 * thread's cache, which is fine for malloc'd blocks. The lists live on the heap (made at a
 * thread's first cached free): initial-exec thread-locals must stay a few bytes, or a dlopen of
 * libmnemo.so finds no room for them in the static TLS block. */
static MN_THREAD_LOCAL block **g_free_list;
static MN_THREAD_LOCAL int64_t g_cached_bytes;
static int64_t g_cache_limit = -1;

/* The cache never holds more than the program once had live at the same time
 * (a steady loop needs at most that to recycle everything), nor more than
 * MNEMO_CACHE_MB (default 4096). */
static int64_t cache_limit(void) {
    if (g_cache_limit < 0) {
        const char *env = getenv("MNEMO_CACHE_MB");
        long mb = env ? strtol(env, NULL, 10) : 4096;
        g_cache_limit = (int64_t)(mb < 0 ? 0 : mb) << 20;
    }
    int64_t peak = mn__peak_live_bytes();
    return peak < g_cache_limit ? peak : g_cache_limit;
}

/* class k covers sizes up to class_size(k); 64-byte minimum */
static size_t class_size(int k) {
    int pow2 = k / 4 + 6, sub = k % 4;
    return ((size_t)1 << pow2) + (size_t)sub * ((size_t)1 << (pow2 - 2));
}

static int class_of(size_t n) {
    if (n <= 64) return 0;
    int pow2 = 63 - __builtin_clzll((unsigned long long)(n - 1)); /* 2^pow2 < n <= 2^(pow2+1) */
    int k = (pow2 - 6) * 4 + 4;                                    /* first class above 2^pow2 */
    while (k > 0 && class_size(k - 1) >= n) k--;
    while (class_size(k) < n) k++;
    return k;
}

void *mn__alloc(size_t nbytes, size_t *capacity) {
    int k = class_of(nbytes);
    if (k >= N_CLASSES) { /* beyond the classes: exact size, never cached */
        *capacity = (nbytes + 63) & ~(size_t)63;
        return aligned_alloc(64, *capacity);
    }
    *capacity = class_size(k);
    if (MN_CACHE_ENABLED && g_free_list && g_free_list[k]) {
        block *b = g_free_list[k];
        g_free_list[k] = b->next;
        g_cached_bytes -= (int64_t)*capacity;
        return b;
    }
    /* aligned_alloc wants a multiple of the alignment (small classes such as 80 are not) */
    return aligned_alloc(64, (*capacity + 63) & ~(size_t)63);
}

void mn__free(void *p, size_t capacity) {
    if (!p) return;
    int k = class_of(capacity);
    if (MN_CACHE_ENABLED && k < N_CLASSES && class_size(k) == capacity &&
        g_cached_bytes + (int64_t)capacity <= cache_limit() &&
        (g_free_list || (g_free_list = calloc(N_CLASSES, sizeof *g_free_list)))) {
        block *b = p;
        b->next = g_free_list[k];
        g_free_list[k] = b;
        g_cached_bytes += (int64_t)capacity;
        return;
    }
    free(p);
}

void mn_memory_trim(void) {
    for (int k = 0; g_free_list && k < N_CLASSES; k++) {
        while (g_free_list[k]) {
            block *b = g_free_list[k];
            g_free_list[k] = b->next;
            free(b);
        }
    }
    g_cached_bytes = 0;
}

int64_t mn_cached_bytes(void) { return g_cached_bytes; }
