/* The shared library's interface: libmnemo.so exports exactly the functions and variables the
 * public headers declare with MN_API (nm -D against a crawl of the installed headers), nothing
 * internal resolves through dlsym, and the file carries a versioned soname. */
#include "testutil.h"

#include <dlfcn.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#define MAX_NAMES 4096

typedef struct {
    char *items[MAX_NAMES];
    int n;
} names;

static bool has(const names *s, const char *name) {
    for (int i = 0; i < s->n; i++)
        if (!strcmp(s->items[i], name)) return true;
    return false;
}

static void add(names *s, const char *name, size_t len) {
    char buf[256];
    if (len >= sizeof buf) fail_msg("name too long");
    memcpy(buf, name, len);
    buf[len] = 0;
    if (has(s, buf)) return;
    if (s->n == MAX_NAMES) fail_msg("too many names");
    s->items[s->n++] = strdup(buf);
}

static void names_free(names *s) {
    for (int i = 0; i < s->n; i++) free(s->items[i]);
    s->n = 0;
}

/* the library beside this test's folder: build/<config>/tests/test_exports -> build/<config>/NAME */
static void library_path(const char *name, char *out, size_t size) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) fail_msg("cannot read /proc/self/exe");
    exe[n] = 0;
    char *slash = strrchr(exe, '/');
    *slash = 0;
    slash = strrchr(exe, '/');
    *slash = 0;
    snprintf(out, size, "%s/%s", exe, name);
}

static bool is_ident(char c) { return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '_'; }

/* Names declared "MN_API ..." in header h and, through its #include "..." lines, in the project
 * headers it pulls in (resolved from the repository root, where the tests run). */
static void crawl(const char *h, names *seen, names *api, int *unmarked) {
    if (has(seen, h)) return;
    add(seen, h, strlen(h));
    FILE *f = fopen(h, "r");
    if (!f) return; /* a system header */
    char line[1024];
    while (fgets(line, sizeof line, f)) {
        const char *inc = strstr(line, "#include \"");
        if (inc == line) {
            const char *start = inc + 10, *end = strchr(start, '"');
            if (end) {
                char path[512];
                snprintf(path, sizeof path, "%.*s", (int)(end - start), start);
                crawl(path, seen, api, unmarked);
            }
            continue;
        }
        const char *decl = !strncmp(line, "MN_API ", 7) ? line : !strncmp(line, "extern MN_API ", 14) ? line : NULL;
        if (!decl) { /* a declaration at file level that forgot the macro would be silently hidden */
            static const char *const not_decl[] = {"typedef", "static", "struct", "enum", "union", "extern \"C\"", "#"};
            bool other = !((line[0] >= 'a' && line[0] <= 'z') || (line[0] >= 'A' && line[0] <= 'Z') || line[0] == '_');
            for (size_t i = 0; !other && i < sizeof not_decl / sizeof not_decl[0]; i++)
                other = !strncmp(line, not_decl[i], strlen(not_decl[i]));
            if (!other && strchr(line, '(')) print_error("%s: declared without MN_API: %s", h, line), (*unmarked)++;
            continue;
        }
        const char *paren = strchr(decl, '('), *stop = paren ? paren : strpbrk(decl, ";[=");
        if (!stop) fail_msg("%s: cannot read the declaration %s", h, line);
        const char *end = stop;
        while (end > decl && end[-1] == ' ') end--;
        const char *start = end;
        while (start > decl && is_ident(start[-1])) start--;
        if (start == end) fail_msg("%s: no name in %s", h, line);
        add(api, start, (size_t)(end - start));
    }
    fclose(f);
}

static void exports_are_the_public_api(void **state) {
    (void)state;
    char so[PATH_MAX + 64], cmd[PATH_MAX + 128];
    library_path("libmnemo.so.0", so, sizeof so);
    snprintf(cmd, sizeof cmd, "nm -D --defined-only '%s'", so);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    names exported = {.n = 0}, seen = {.n = 0}, api = {.n = 0};
    char line[512];
    while (fgets(line, sizeof line, p)) {
        char addr[64], kind[8], name[256];
        if (sscanf(line, "%63s %7s %255s", addr, kind, name) == 3) add(&exported, name, strlen(name));
    }
    assert_int_equal(pclose(p), 0);
    int unmarked = 0;
    crawl("mnemo.h", &seen, &api, &unmarked);
    assert_true(api.n > 300); /* the crawl found the headers */
    assert_int_equal(unmarked, 0);
    int stray = 0, missing = 0;
    for (int i = 0; i < exported.n; i++)
        if (!has(&api, exported.items[i])) print_error("exported but not public: %s\n", exported.items[i]), stray++;
    for (int i = 0; i < api.n; i++)
        if (!has(&exported, api.items[i])) print_error("public but not exported: %s\n", api.items[i]), missing++;
    assert_int_equal(stray, 0);
    assert_int_equal(missing, 0);
    names_free(&exported), names_free(&seen), names_free(&api);
}

static void internals_do_not_resolve(void **state) {
    (void)state;
    char so[PATH_MAX + 64];
    library_path("libmnemo.so.0", so, sizeof so);
    void *h = dlopen(so, RTLD_NOW | RTLD_LOCAL);
    if (!h) fail_msg("dlopen %s: %s", so, dlerror());
    assert_non_null(dlsym(h, "mn_empty"));
    assert_non_null(dlsym(h, "mn_backward"));
    assert_non_null(dlsym(h, "mn_optim_from_spec"));
    const char *internal[] = {"lopt_fast_step", "lf_select_kernels", "mn__xmalloc", "mn__basic_tokenize",
                              "mn_sgemm", "mn_vexp_avx512"};
    for (size_t i = 0; i < sizeof internal / sizeof internal[0]; i++) {
        if (dlsym(h, internal[i])) fail_msg("%s resolves in %s", internal[i], so);
    }
    dlclose(h);
}

static void shared_library_has_a_versioned_soname(void **state) {
    (void)state;
    char so[PATH_MAX + 64], cmd[PATH_MAX + 128];
    library_path("libmnemo.so", so, sizeof so);
    snprintf(cmd, sizeof cmd, "readelf -d '%s'", so);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    char line[512], soname[128] = "";
    while (fgets(line, sizeof line, p)) {
        const char *at = strstr(line, "Library soname: [");
        if (at) sscanf(at + 17, "%127[^]]", soname);
    }
    assert_int_equal(pclose(p), 0);
    assert_string_equal(soname, "libmnemo.so.0");
    char target[PATH_MAX];
    ssize_t n = readlink(so, target, sizeof target - 1); /* libmnemo.so -> libmnemo.so.0 -> .so.0.x.y */
    assert_true(n > 0);
    target[n] = 0;
    assert_string_equal(target, "libmnemo.so.0");
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(exports_are_the_public_api),
        cmocka_unit_test(internals_do_not_resolve),
        cmocka_unit_test(shared_library_has_a_versioned_soname),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
