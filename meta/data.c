/* Data shared by the tasks of a meta-training or evaluation run: Fashion-MNIST at both sizes and
 * values built once per run (the fortunes corpus), loaded on first use. */
#include "meta/meta_internal.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef struct cache_entry {
    char *key;
    void *value;
    void (*destroy)(void *value);
    struct cache_entry *next;
} cache_entry;

struct mn_meta_data {
    char *fm_dir, *fortunes_dir, *work_dir;
    int64_t test_limit;
    /* Fashion-MNIST [train/test][28 / 14 pixels]: x [N, 1, S, S], y [N]; loaded on first use */
    mn_tensor *x[2][2], *y[2];
    cache_entry *cache;
};

void *meta_data_cache(mn_meta_data *d, const char *key, void *(*make)(mn_meta_data *d, const char *key, mn_err *err),
                      void (*destroy)(void *value), mn_err *err) {
    for (cache_entry *e = d->cache; e; e = e->next)
        if (!strcmp(e->key, key)) return e->value;
    void *value = make(d, key, err);
    if (!value) return NULL;
    cache_entry *e = calloc(1, sizeof *e);
    if (!e) mn_fatal("meta data cache: out of memory");
    *e = (cache_entry){strdup(key), value, destroy, d->cache};
    d->cache = e;
    return value;
}

static char *dup_or_null(const char *s) { return s ? strdup(s) : NULL; }

mn_meta_data *mn_meta_data_new(const char *fm_dir, const char *fortunes_dir, const char *work_dir, int64_t test_limit) {
    mn_meta_data *d = calloc(1, sizeof *d);
    if (!d) mn_fatal("mn_meta_data_new: out of memory");
    d->fm_dir = dup_or_null(fm_dir);
    d->fortunes_dir = dup_or_null(fortunes_dir);
    d->work_dir = strdup(work_dir ? work_dir : ".");
    d->test_limit = test_limit;
    return d;
}

void mn_meta_data_free(mn_meta_data *d) {
    if (!d) return;
    while (d->cache) {
        cache_entry *e = d->cache;
        d->cache = e->next;
        e->destroy(e->value);
        free(e->key);
        free(e);
    }
    for (int s = 0; s < 2; s++) {
        mn_release(d->y[s]);
        for (int k = 0; k < 2; k++) mn_release(d->x[s][k]);
    }
    free(d->fm_dir);
    free(d->fortunes_dir);
    free(d->work_dir);
    free(d);
}

int64_t meta_data_test_limit(const mn_meta_data *d) { return d->test_limit; }
const char *meta_data_work_dir(const mn_meta_data *d) { return d->work_dir; }
const char *meta_data_fortunes_dir(const mn_meta_data *d) { return d->fortunes_dir; }

bool mn_meta_data_images(mn_meta_data *d, int size, bool train, mn_tensor **x, mn_tensor **y, mn_err *err) {
    int s = train ? 0 : 1, k = size == 28 ? 0 : 1;
    if (size != 28 && size != 14) mn_fatal("mn_meta_data_images: size %d (28 or 14)", size);
    if (!d->y[s]) {
        mn_dataset ds;
        if (!mn_fashion_mnist_load(d->fm_dir, train, true, &ds, err)) return false;
        d->x[s][0] = mn_retain(ds.x);
        d->y[s] = mn_retain(ds.y);
        mn_dataset_free(&ds);
    }
    if (!d->x[s][k]) {
        /* antialiased bilinear downsampling, as PIL's resize */
        mn_scope sc = mn_scope_begin();
        d->x[s][k] = mn_retain(mn_image_resize(d->x[s][0], size, size));
        mn_scope_end(sc);
    }
    *x = d->x[s][k];
    *y = d->y[s];
    return true;
}
