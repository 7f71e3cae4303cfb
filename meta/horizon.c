/* Truncation schedules: the horizon T of each sampled task (the inner steps it is trained for before
 * a new task replaces it). Log-uniform horizons spend as many tasks on each decade of lengths, so
 * long runs are seen without making short ones rare. */
#include "meta/meta_internal.h"

#include <math.h>
#include <string.h>

static const char *const horizon_names[] = {"uniform", "log-uniform", "constant"};

const char *mn_horizon_kind_name(mn_horizon_kind kind) { return (unsigned)kind < 3 ? horizon_names[kind] : "unknown"; }

bool mn_horizon_kind_parse(const char *name, mn_horizon_kind *out) {
    for (int k = 0; k < 3; k++)
        if (name && !strcmp(name, horizon_names[k])) return *out = (mn_horizon_kind)k, true;
    return false;
}

int64_t mn_horizon_sample(mn_horizon_kind kind, int64_t min, int64_t max, mn_rng *rng) {
    if (min < 1 || max < min) mn_fatal("mn_horizon_sample: horizon range [%lld, %lld] is empty", (long long)min, (long long)max);
    switch (kind) {
    case MN_HORIZON_UNIFORM: return min + (int64_t)mn_rng_below(rng, (uint64_t)(max - min + 1));
    case MN_HORIZON_CONSTANT: return max;
    case MN_HORIZON_LOG_UNIFORM: {
        double u = ((double)mn_rng_u32(rng) + 0.5) / 4294967296.0;
        int64_t t = (int64_t)floor(exp(log((double)min) + u * (log((double)max + 1) - log((double)min))));
        return t < min ? min : t > max ? max : t;
    }
    }
    mn_fatal("mn_horizon_sample: unknown schedule %d", (int)kind);
}
