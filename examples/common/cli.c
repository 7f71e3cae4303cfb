#include "cli.h"

#include <errno.h>
#include <math.h>
#include <omp.h>
#include <stdlib.h>
#include <string.h>

void cli_usage(const cli_spec *s, FILE *f) {
    fprintf(f, "usage: %s %s\n%s\n\noptions:\n", s->prog, s->usage, s->description);
    for (int i = 0; i < s->n_opts; i++) {
        const cli_opt *o = &s->opts[i];
        char def[96] = "";
        switch (o->kind) {
        case CLI_INT: snprintf(def, sizeof def, " (default %ld)", *(long *)o->target); break;
        case CLI_FLOAT: snprintf(def, sizeof def, " (default %g)", *(double *)o->target); break;
        case CLI_STRING:
            if (*(const char **)o->target) snprintf(def, sizeof def, " (default %s)", *(const char **)o->target);
            break;
        case CLI_FLAG: break;
        }
        const char *arg = o->kind == CLI_INT ? " N" : o->kind == CLI_FLOAT ? " X" : o->kind == CLI_STRING ? " S" : "";
        char left[64];
        snprintf(left, sizeof left, "%s%s", o->name, arg);
        fprintf(f, "  %-24s %s%s\n", left, o->help, def);
    }
    fprintf(f, "  %-24s %s\n", "--help", "show this text");
}

static bool in_range(const cli_opt *o, double v) { return (o->min == 0 && o->max == 0) || (v >= o->min && v <= o->max); }

int cli_parse(const cli_spec *s, int argc, char **argv, const char **positional, int max_positional,
              int *n_positional) {
    int npos = 0;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (!strcmp(a, "--help") || !strcmp(a, "-h")) {
            cli_usage(s, stdout);
            return 1;
        }
        if (a[0] != '-' || a[1] == '\0' || (a[1] != '-' && (a[1] < 'a' || a[1] > 'z'))) {
            if (npos >= max_positional) {
                fprintf(stderr, "%s: unexpected argument '%s' (see --help)\n", s->prog, a);
                return 2;
            }
            positional[npos++] = a;
            continue;
        }
        cli_opt *o = NULL;
        for (int k = 0; k < s->n_opts; k++)
            if (!strcmp(s->opts[k].name, a)) o = &s->opts[k];
        if (!o) {
            fprintf(stderr, "%s: unknown option %s (see --help)\n", s->prog, a);
            return 2;
        }
        o->given = true;
        if (o->kind == CLI_FLAG) {
            *(bool *)o->target = true;
            continue;
        }
        if (i + 1 >= argc) {
            fprintf(stderr, "%s: option %s needs a value (see --help)\n", s->prog, a);
            return 2;
        }
        const char *v = argv[++i];
        char *end;
        errno = 0;
        if (o->kind == CLI_INT) {
            long x = strtol(v, &end, 10);
            if (errno || *end || end == v || !in_range(o, (double)x)) {
                fprintf(stderr, "%s: %s expects an integer%s, got '%s'\n", s->prog, a,
                        o->min || o->max ? " in range" : "", v);
                if (o->min || o->max) fprintf(stderr, "  (accepted: %g to %g)\n", o->min, o->max);
                return 2;
            }
            *(long *)o->target = x;
        } else if (o->kind == CLI_FLOAT) {
            double x = strtod(v, &end);
            if (errno || *end || end == v || !isfinite(x) || !in_range(o, x)) {
                fprintf(stderr, "%s: %s expects a number%s, got '%s'\n", s->prog, a, o->min || o->max ? " in range" : "",
                        v);
                if (o->min || o->max) fprintf(stderr, "  (accepted: %g to %g)\n", o->min, o->max);
                return 2;
            }
            *(double *)o->target = x;
        } else {
            *(const char **)o->target = v;
        }
    }
    if (n_positional) *n_positional = npos;
    return 0;
}

int cli_count(const cli_opt *opts, int cap) {
    int n = 0;
    while (n < cap && opts[n].name) n++;
    return n;
}

int cli_exit(const char *prog, int status) {
    if (fflush(stdout) == 0 && !ferror(stdout)) return status;
    fprintf(stderr, "%s: cannot write to stdout: %s\n", prog, strerror(errno ? errno : EIO));
    return status ? status : 1;
}

int cli_cap_threads(const char *prog, long requested) {
    int cores = omp_get_num_procs();
    if (requested <= cores) return (int)requested;
    fprintf(stderr, "%s: warning: --threads %ld is more than the %d cores of this machine; using %d\n", prog,
            requested, cores, cores);
    return cores;
}

int cli_threads(const char *prog, long requested) {
    requested = cli_cap_threads(prog, requested);
    if (requested > 0) omp_set_num_threads((int)requested);
    return requested > 0 ? (int)requested : omp_get_max_threads();
}

bool cli_given(const cli_spec *s, const char *name) {
    for (int k = 0; k < s->n_opts; k++)
        if (!strcmp(s->opts[k].name, name)) return s->opts[k].given;
    return false;
}
