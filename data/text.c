/* Text datasets: the fortunes corpus and text<TAB>label files. */
#include "data/data_internal.h"
#include "data/strmap.h"

#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#define MAX_TEXT_FILE ((size_t)1 << 30)

void mn_text_dataset_free(mn_text_dataset *d) {
    mn__strs_free(d->texts, d->n);
    free(d->labels);
    mn__strs_free(d->class_names, d->n_classes);
    memset(d, 0, sizeof *d);
}

typedef struct {
    mn_text_dataset *d;
    int64_t cap;
} text_builder;

static void add_text(text_builder *b, char *text, int32_t label) {
    if (b->d->n == b->cap) {
        b->cap = b->cap ? 2 * b->cap : 256;
        b->d->texts = mn__xrealloc(b->d->texts, sizeof *b->d->texts * (size_t)b->cap, "texts");
        b->d->labels = mn__xrealloc(b->d->labels, sizeof *b->d->labels * (size_t)b->cap, "labels");
    }
    b->d->texts[b->d->n] = text;
    b->d->labels[b->d->n++] = label;
}

void mn_text_dataset_subset(const mn_text_dataset *d, mn_tensor *index, mn_text_dataset *out) {
    mn_scope sc = mn_scope_begin();
    const int32_t *ix = mn_idata(mn__checked_index(index, d->n, "mn_text_dataset_subset"));
    int64_t m = index->shape[0];
    mn_text_dataset r = {0};
    r.texts = mn__xmalloc(sizeof *r.texts * (size_t)(m ? m : 1), "texts");
    r.labels = mn__xmalloc(sizeof *r.labels * (size_t)(m ? m : 1), "labels");
    for (int64_t i = 0; i < m; i++) {
        r.texts[i] = mn__strdup(d->texts[ix[i]]);
        r.labels[i] = d->labels[ix[i]];
    }
    r.n = m;
    r.n_classes = d->n_classes;
    r.class_names = mn__strs_dup(d->n_classes, (const char *const *)d->class_names);
    *out = r;
    mn_scope_end(sc);
}

void mn_text_dataset_split(const mn_text_dataset *d, double test_fraction, bool stratified, mn_rng *rng,
                           mn_text_dataset *train, mn_text_dataset *test) {
    mn_scope sc = mn_scope_begin();
    mn_tensor *tr, *te;
    mn_split_indices(d->n, stratified ? d->labels : NULL, d->n_classes, test_fraction, rng, &tr, &te);
    mn_text_dataset_subset(d, tr, train);
    mn_text_dataset_subset(d, te, test);
    mn_scope_end(sc);
}

/* ---- fortunes ------------------------------------------------------------------------------------ */

static bool is_blank(const char *s, size_t n) {
    for (size_t i = 0; i < n; i++)
        if (s[i] != ' ' && s[i] != '\t' && s[i] != '\n' && s[i] != '\r' && s[i] != '\f' && s[i] != '\v') return false;
    return true;
}

/* Appends the entries of one fortune file; returns the number added or -1 on error. */
static int64_t parse_fortunes(const char *path, int32_t label, text_builder *b, mn_err *err) {
    size_t size;
    char *data = mn_read_file(path, &size, MAX_TEXT_FILE, err);
    if (!data) return -1;
    int64_t added = 0, line_no = 0;
    size_t entry_start = 0, pos = 0;
    while (pos <= size) {
        size_t end = pos;
        while (end < size && data[end] != '\n') end++;
        line_no++;
        size_t len = end - pos;
        if (memchr(data + pos, 0, len)) {
            free(data);
            return mn_err_set(err, "%s:%lld: NUL byte in a text file", path, (long long)line_no), -1;
        }
        bool separator = (len == 1 && data[pos] == '%') || (len == 2 && data[pos] == '%' && data[pos + 1] == '\r');
        if (separator || end >= size) {
            size_t stop = separator ? pos : size;
            /* the entry is data[entry_start, stop) minus its final newline */
            size_t n = stop - entry_start;
            if (n && data[entry_start + n - 1] == '\n') n--;
            if (n && data[entry_start + n - 1] == '\r') n--;
            if (!is_blank(data + entry_start, n)) {
                add_text(b, mn__strndup(data + entry_start, n), label);
                added++;
            }
            entry_start = end + 1;
        }
        pos = end + 1;
    }
    free(data);
    if (!added) return mn_err_set(err, "%s: no fortunes found (entries are separated by lines holding %%)", path), -1;
    return added;
}

static bool fortune_file_name(const char *dir, const char *name) {
    size_t n = strlen(name);
    if (name[0] == '.') return false;
    if ((n > 4 && !strcmp(name + n - 4, ".dat")) || (n > 3 && !strcmp(name + n - 3, ".u8"))) return false;
    size_t len = strlen(dir) + n + 2;
    char *path = mn__xmalloc(len, "path");
    snprintf(path, len, "%s/%s", dir, name);
    struct stat st;
    bool regular = stat(path, &st) == 0 && S_ISREG(st.st_mode);
    free(path);
    return regular;
}

bool mn_fortunes_load(const char *dir, int n, const char *const *categories, mn_text_dataset *out, mn_err *err) {
    if (!dir) dir = MN_FORTUNES_DIR;
    char **names = NULL;
    int64_t n_names = 0;
    if (n > 0) {
        names = mn__strs_dup(n, categories);
        n_names = n;
    } else {
        DIR *d = opendir(dir);
        if (!d) return mn_err_set(err, "%s: cannot open directory", dir);
        struct dirent *e;
        int64_t cap = 0;
        while ((e = readdir(d))) {
            if (!fortune_file_name(dir, e->d_name)) continue;
            if (n_names == cap) {
                cap = cap ? 2 * cap : 64;
                names = mn__xrealloc(names, sizeof *names * (size_t)cap, "categories");
            }
            names[n_names++] = mn__strdup(e->d_name);
        }
        closedir(d);
        if (!n_names) return mn_err_set(err, "%s: no fortune files found", dir);
        mn__sort_strs(names, n_names);
    }
    mn_text_dataset r = {0};
    text_builder b = {&r, 0};
    for (int64_t c = 0; c < n_names; c++) {
        size_t len = strlen(dir) + strlen(names[c]) + 2;
        char *path = mn__xmalloc(len, "path");
        snprintf(path, len, "%s/%s", dir, names[c]);
        int64_t k = parse_fortunes(path, (int32_t)c, &b, err);
        free(path);
        if (k < 0) {
            mn_text_dataset_free(&r);
            mn__strs_free(names, n_names);
            return false;
        }
    }
    r.n_classes = (int)n_names;
    r.class_names = names;
    *out = r;
    return true;
}

/* ---- TSV ------------------------------------------------------------------------------------------- */

static int cmp_names(const void *a, const void *b, void *names) {
    char **v = names;
    return strcmp(v[*(const int32_t *)a], v[*(const int32_t *)b]);
}

bool mn_tsv_load(const char *path, mn_label_order order, int n_known, const char *const *known,
                 mn_text_dataset *out, mn_err *err) {
    mn__strmap labels = {0};
    for (int i = 0; i < n_known; i++) {
        bool inserted;
        int64_t *v = mn__strmap_put(&labels, known[i], strlen(known[i]), &inserted);
        if (!inserted) mn_fatal("mn_tsv_load: class name \"%s\" given twice", known[i]);
        *v = i;
    }
    size_t size;
    char *data = mn_read_file(path, &size, MAX_TEXT_FILE, err);
    if (!data) {
        mn__strmap_free(&labels);
        return false;
    }
    mn_text_dataset r = {0};
    text_builder b = {&r, 0};
    int64_t line_no = 0;
    bool ok = true;
    for (size_t pos = 0; pos < size && ok;) {
        size_t end = pos;
        while (end < size && data[end] != '\n') end++;
        line_no++;
        size_t len = end - pos;
        const char *line = data + pos;
        pos = end + 1;
        if (len && line[len - 1] == '\r') len--;
        if (is_blank(line, len)) continue;
        const char *tab = NULL;
        size_t bad;
        for (size_t i = len; i-- > 0;)
            if (line[i] == '\t') {
                tab = line + i;
                break;
            }
        if (memchr(line, 0, len)) {
            ok = mn_err_set(err, "%s:%lld: NUL byte in a text file", path, (long long)line_no);
        } else if (!mn_utf8_valid(line, len, &bad)) {
            ok = mn_err_set(err, "%s:%lld: invalid UTF-8 at byte %zu of the line (save the file as UTF-8)", path,
                            (long long)line_no, bad + 1);
        } else if (!tab) {
            ok = mn_err_set(err, "%s:%lld: expected text<TAB>label, found no tab", path, (long long)line_no);
        } else {
            const char *lab = tab + 1, *lab_end = line + len;
            while (lab < lab_end && *lab == ' ') lab++;
            while (lab_end > lab && lab_end[-1] == ' ') lab_end--;
            if (lab == lab_end) {
                ok = mn_err_set(err, "%s:%lld: empty label after the last tab", path, (long long)line_no);
                continue;
            }
            int64_t *id = n_known ? mn__strmap_get(&labels, lab, (size_t)(lab_end - lab)) : NULL;
            if (!id && n_known) {
                ok = mn_err_set(err, "%s:%lld: label \"%.*s\" is not one of the %d known classes", path,
                                (long long)line_no, (int)(lab_end - lab), lab, n_known);
                continue;
            }
            if (!id) {
                bool inserted;
                id = mn__strmap_put(&labels, lab, (size_t)(lab_end - lab), &inserted);
                if (inserted) *id = (int64_t)labels.count - 1;
            }
            add_text(&b, mn__strndup(line, (size_t)(tab - line)), (int32_t)*id);
        }
    }
    free(data);
    if (ok && r.n == 0) ok = mn_err_set(err, "%s: no text<TAB>label lines found", path);
    if (!ok) {
        mn_text_dataset_free(&r);
        mn__strmap_free(&labels);
        return false;
    }
    int n_classes = (int)labels.count;
    r.n_classes = n_classes;
    r.class_names = mn__xmalloc(sizeof *r.class_names * (size_t)n_classes, "class names");
    for (int i = 0; i < n_classes; i++) r.class_names[i] = mn__strdup(mn__strmap_key(&labels, (size_t)i));
    if (order == MN_LABELS_SORTED && n_known == 0) {
        /* rank[old id] = position of that name in byte order */
        int32_t *by_name = mn__xmalloc(sizeof *by_name * (size_t)n_classes, "labels");
        int32_t *rank = mn__xmalloc(sizeof *rank * (size_t)n_classes, "labels");
        for (int i = 0; i < n_classes; i++) by_name[i] = i;
        qsort_r(by_name, (size_t)n_classes, sizeof *by_name, cmp_names, r.class_names);
        for (int i = 0; i < n_classes; i++) rank[by_name[i]] = i;
        for (int64_t i = 0; i < r.n; i++) r.labels[i] = rank[r.labels[i]];
        mn__sort_strs(r.class_names, n_classes);
        free(by_name);
        free(rank);
    }
    mn__strmap_free(&labels);
    *out = r;
    return true;
}

bool mn_lines_load(const char *path, mn_text_dataset *out, mn_err *err) {
    size_t size;
    char *data = mn_read_file(path, &size, MAX_TEXT_FILE, err);
    if (!data) return false;
    mn_text_dataset r = {0};
    text_builder b = {&r, 0};
    int64_t line_no = 0;
    bool ok = true;
    for (size_t pos = 0; pos < size && ok;) {
        size_t end = pos;
        while (end < size && data[end] != '\n') end++;
        line_no++;
        size_t len = end - pos, bad;
        const char *line = data + pos;
        pos = end + 1;
        if (len && line[len - 1] == '\r') len--;
        if (is_blank(line, len)) continue;
        if (memchr(line, 0, len)) ok = mn_err_set(err, "%s:%lld: NUL byte in a text file", path, (long long)line_no);
        else if (!mn_utf8_valid(line, len, &bad))
            ok = mn_err_set(err, "%s:%lld: invalid UTF-8 at byte %zu of the line (save the file as UTF-8)", path,
                            (long long)line_no, bad + 1);
        else add_text(&b, mn__strndup(line, len), 0);
    }
    free(data);
    if (ok && r.n == 0) ok = mn_err_set(err, "%s: no text found (one document per line)", path);
    if (!ok) {
        mn_text_dataset_free(&r);
        return false;
    }
    const char *base = strrchr(path, '/');
    r.n_classes = 1;
    r.class_names = mn__xmalloc(sizeof *r.class_names, "class names");
    r.class_names[0] = mn__strdup(base ? base + 1 : path);
    *out = r;
    return true;
}
