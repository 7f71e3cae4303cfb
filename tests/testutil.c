#include "testutil.h"

#include <limits.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

jmp_buf tu_trap_jmp;
static mn_error_handler tu_prev_handler;
static void *tu_prev_user;
static int tu_armed;

static void trap_handler(const char *message, void *user) {
    (void)message;
    (void)user;
    longjmp(tu_trap_jmp, 1);
}

void tu_trap_arm(void) {
    if (!tu_armed) tu_prev_handler = mn_set_error_handler(trap_handler, NULL, &tu_prev_user);
    tu_armed = 1;
}

void tu_trap_end(void) {
    if (tu_armed) mn_set_error_handler(tu_prev_handler, tu_prev_user, NULL);
    tu_armed = 0;
}

void tu_scope_unwind(mn_scope sc) {
    mn_scope_unwind(sc);
    mn_set_grad_enabled(true); /* a failed backward may have left grad mode off */
}

mn_tensor *tu_rand(uint64_t seed, int ndim, const int64_t *shape, float lo, float hi) {
    mn_rng g = mn_rng_new(seed);
    return mn_rand_gen(&g, ndim, shape, lo, hi);
}

double tu_close_ratio(const mn_tensor *a, const mn_tensor *b, double atol, double rtol) {
    int64_t n = mn_numel(a);
    if (n != mn_numel(b)) return INFINITY;
    float *x = malloc(sizeof(float) * (size_t)(n + 1)), *y = malloc(sizeof(float) * (size_t)(n + 1));
    mn_to_array(a, x);
    mn_to_array(b, y);
    double worst = 0;
    for (int64_t i = 0; i < n; i++) {
        double d = fabs((double)x[i] - y[i]);
        double r = d == 0 ? 0 : d / (atol + rtol * fabs((double)y[i]));
        if (isnan(r)) r = (isnan(x[i]) && isnan(y[i])) ? 0 : INFINITY;
        if (r > worst) worst = r;
    }
    free(x);
    free(y);
    return worst;
}

void tu_assert_close(const mn_tensor *a, const mn_tensor *b, double atol, double rtol) {
    char sa[96], sb[96];
    if (!mn_same_shape(a, b)) fail_msg("shapes differ: %s vs %s", mn_shape_str(a, sa), mn_shape_str(b, sb));
    double r = tu_close_ratio(a, b, atol, rtol);
    if (!(r <= 1.0)) fail_msg("tensors differ: worst error is %.3g x the tolerance", r);
}

bool tu_build_dir(char *out, size_t size) {
    char exe[PATH_MAX];
    ssize_t n = readlink("/proc/self/exe", exe, sizeof exe - 1);
    if (n <= 0) return false;
    exe[n] = 0;
    for (int up = 0; up < 2; up++) { /* drop NAME, then tests */
        char *slash = strrchr(exe, '/');
        if (!slash) return false;
        *slash = 0;
    }
    return snprintf(out, size, "%s", exe) < (int)size;
}

int tu_remove_tree(const char *dir) {
    char cmd[PATH_MAX + 32];
    if (snprintf(cmd, sizeof cmd, "rm -rf '%s'", dir) >= (int)sizeof cmd) return -1;
    return system(cmd) == 0 && access(dir, F_OK) != 0 ? 0 : -1;
}
