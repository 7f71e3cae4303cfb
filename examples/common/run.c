#include "run.h"

#include <errno.h>
#include <jansson.h>
#include <math.h>
#include <omp.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Appends cli options to opts while there is room; returns the new count. */
static int append(cli_opt *opts, int n, int cap, const cli_opt *more, size_t n_more) {
    for (size_t i = 0; i < n_more && n < cap; i++) opts[n++] = more[i];
    return n;
}

static int add_common_options(cli_opt *opts, int n, int cap, run_opts *r) {
    cli_opt common[] = {
        {"--optimizer", CLI_STRING, &r->optimizer,
         "adamw | adam | sgd | lstm | mnemosyne-c | mnemosyne-t, or a full spec such as adamw:1e-3:0.05"},
        {"--optimizer-checkpoint", CLI_STRING, &r->optimizer_checkpoint,
         "learned optimizers: a checkpoint written by bench/meta_train (default: the weights built into mnemo)"},
        {"--lr", CLI_FLOAT, &r->lr, "learning rate (ignored when --optimizer gives one); for lstm and mnemosyne-* "
                                    "a multiplier of their meta-trained step (default for them: 1)", 0, 10},
        {"--weight-decay", CLI_FLOAT, &r->weight_decay, "AdamW's decoupled weight decay (-1: its default, 0.01)", -1, 10},
        {"--schedule", CLI_STRING, &r->schedule, "learning-rate schedule: constant, linear or cosine"},
        {"--warmup", CLI_INT, &r->warmup, "linear warm-up steps (the default is cut to a tenth of a short run)", 0,
         1e9},
        {"--warmup-ratio", CLI_FLOAT, &r->warmup_ratio, "warm-up as a share of the run's steps (instead of --warmup)",
         0, 1},
        {"--clip", CLI_FLOAT, &r->clip, "clip the global gradient norm (0: off)", 0, 1e9},
        {"--steps", CLI_INT, &r->steps, "training steps (0: use --epochs)", 0, 1e12},
        {"--epochs", CLI_INT, &r->epochs, "training epochs (when --steps is 0)", 0, 1e6},
        {"--batch", CLI_INT, &r->batch, "batch size", 1, 1 << 20},
        {"--seed", CLI_INT, &r->seed, "random seed (initialisation, data order, dropout)", 0, 9e15},
        {"--threads", CLI_INT, &r->threads, "OpenMP threads (0: all cores)", 0, 1024},
        {"--save", CLI_STRING, &r->save_dir, "save the model (Hugging Face layout) and trainer state to this directory"},
        {"--resume", CLI_STRING, &r->resume_dir, "resume from a directory written by --save"},
        {"--log", CLI_STRING, &r->log_path, "metrics log, one JSON object per line"},
        {"--log-every", CLI_INT, &r->log_every, "steps between progress lines and metrics records", 1, 1e9},
    };
    return append(opts, n, cap, common, sizeof common / sizeof common[0]);
}

static int add_checkpoint_options(cli_opt *opts, int n, int cap, run_opts *r) {
    cli_opt checkpoints[] = {
        {"--save-every", CLI_INT, &r->save_every, "steps between checkpoints to --save (0: at the end only)", 0, 1e12},
        {"--stop-at", CLI_INT, &r->stop_at, "stop (and save) after this step; --resume continues (0: run to the end)",
         0, 1e12},
    };
    return append(opts, n, cap, checkpoints, sizeof checkpoints / sizeof checkpoints[0]);
}

/* Applies --threads and validates the option combination; prints and returns false if bad. */
static bool setup(const run_opts *r, const char *prog) {
    cli_threads(prog, r->threads);
    mn_sched_kind k;
    if (!mn_schedule_parse(r->schedule, &k)) {
        fprintf(stderr, "%s: unknown --schedule '%s' (constant, linear or cosine)\n", prog, r->schedule);
        return false;
    }
    if (r->steps == 0 && r->epochs == 0) {
        fprintf(stderr, "%s: give --steps or --epochs\n", prog);
        return false;
    }
    return true;
}

/* --resume DIR: a complete checkpoint (its manifest matching its files), or DIR.old when a save
 * stopped between its renames; every later read uses the resolved directory */
static bool resolve_resume(run_opts *r, const char *prog) {
    if (!r->resume_dir) return true;
    mn_err err;
    if (!mn_ckpt_dir_open(r->resume_dir, r->resume_resolved, sizeof r->resume_resolved, NULL, &err)) {
        fprintf(stderr, "%s: cannot resume: %s\n", prog, err.msg);
        return false;
    }
    r->resume_dir = r->resume_resolved;
    return true;
}

int run_parse_command_line(cli_spec *spec, int cap, run_opts *r, int argc, char **argv) {
    spec->n_opts = add_checkpoint_options(spec->opts, spec->n_opts, cap, r);
    spec->n_opts = add_common_options(spec->opts, spec->n_opts, cap, r);
    int rc = cli_parse(spec, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    r->lr_given = cli_given(spec, "--lr");
    r->weight_decay_given = cli_given(spec, "--weight-decay");
    r->warmup_given = cli_given(spec, "--warmup");
    if (r->warmup_given && cli_given(spec, "--warmup-ratio")) {
        fprintf(stderr, "%s: give --warmup or --warmup-ratio, not both\n", spec->prog);
        return 2;
    }
    if (!setup(r, spec->prog)) return 2;
    if (!resolve_resume(r, spec->prog)) return 1;
    setvbuf(stdout, NULL, _IOLBF, 0);
    return -1;
}

int run_fail(const char *prog, const char *msg, int status) {
    fprintf(stderr, "%s: %s\n", prog, msg);
    return status;
}

mn_optimizer *run_make_optimizer(const run_opts *r, const mn_params *params, mn_err *err) {
    char spec[512];
    const char *o = r->optimizer;
    bool learned = !strncmp(o, "lstm", 4) || !strncmp(o, "mnemosyne", 9);
    if (r->optimizer_checkpoint) {
        if (!learned || strchr(o, ':')) {
            mn_err_set(err, "--optimizer-checkpoint goes with --optimizer lstm, mnemosyne-c or mnemosyne-t, not %s", o);
            return NULL;
        }
        snprintf(spec, sizeof spec, "%s:%s", o, r->optimizer_checkpoint);
    } else if (strchr(o, ':') || learned) snprintf(spec, sizeof spec, "%s", o);
    else if (!strcmp(o, "adamw") && r->weight_decay >= 0) snprintf(spec, sizeof spec, "adamw:%g:%g", r->lr, r->weight_decay);
    else snprintf(spec, sizeof spec, "%s:%g", o, r->lr);
    if (r->weight_decay_given && strcmp(o, "adamw"))
        fprintf(stderr, "note: --weight-decay applies to adamw only; ignored for %s\n", o);
    if (r->lr_given && strchr(o, ':') && !learned)
        fprintf(stderr, "note: --lr is ignored: --optimizer %s gives the learning rate\n", o);
    return mn_optim_from_spec(spec, params, err);
}

int64_t run_total_steps(const run_opts *r, int64_t batches_per_epoch) {
    return r->steps > 0 ? r->steps : r->epochs * batches_per_epoch;
}

mn_tensor *run_eval_rows(int64_t at, int64_t batch, int64_t n) {
    int64_t b = n - at < batch ? n - at : batch;
    mn_tensor *rows = mn_empty_dtype(MN_I32, MN_SHAPE(b));
    for (int64_t i = 0; i < b; i++) mn_idata(rows)[i] = (int32_t)(at + i);
    return rows;
}

static bool is_learned(const char *o) { return !strncmp(o, "lstm", 4) || !strncmp(o, "mnemosyne", 9); }

/* The base learning rate (learned optimizers: the step scale) the schedule multiplies. */
static double base_lr(const run_opts *r) {
    if (is_learned(r->optimizer)) return r->lr_given ? r->lr : 1.0;
    const char *colon = strchr(r->optimizer, ':');
    return colon ? atof(colon + 1) : r->lr;
}

void run_apply_schedule(const run_opts *r, mn_optimizer *o, int64_t step, int64_t total, int64_t warmup) {
    mn_schedule s = {MN_SCHED_CONSTANT, (float)base_lr(r), 0, warmup, total};
    mn_schedule_parse(r->schedule, &s.kind);
    mn_optim_set_lr(o, mn_schedule_lr(&s, step));
}

int64_t run_warmup_steps(const run_opts *r, int64_t total, const char *prog) {
    if (r->warmup_ratio > 0) return (int64_t)ceil(r->warmup_ratio * (double)total);
    if (r->warmup_given) {
        if (r->warmup >= total && total > 0)
            fprintf(stderr, "%s: warning: --warmup %ld spans the whole run of %lld steps: the learning rate never "
                    "reaches its full value\n", prog, r->warmup, (long long)total);
        return r->warmup;
    }
    if (r->warmup <= total / 10) return r->warmup;
    int64_t w = total / 10;
    fprintf(stderr, "%s: note: warm-up shortened from the default %ld steps to %lld, a tenth of this %lld-step run "
            "(--warmup or --warmup-ratio sets it)\n", prog, r->warmup, (long long)w, (long long)total);
    return w;
}

double run_weight_decay(const run_opts *r) {
    const char *o = r->optimizer, *colon = strchr(o, ':');
    size_t kind = colon ? (size_t)(colon - o) : strlen(o);
    if (kind == 5 && !strncmp(o, "adamw", 5)) {
        const char *wd = colon ? strchr(colon + 1, ':') : NULL;
        return wd ? atof(wd + 1) : !colon && r->weight_decay >= 0 ? r->weight_decay : 0.01;
    }
    if ((kind == 4 && !strncmp(o, "adam", 4)) || (kind == 3 && !strncmp(o, "sgd", 3))) return 0;
    return -1;
}

void run_describe_optimizer(const run_opts *r, char *buf, size_t size) {
    const char *o = r->optimizer, *colon = strchr(o, ':');
    int kind = colon ? (int)(colon - o) : (int)strlen(o);
    if (is_learned(o)) {
        const char *ckpt = r->optimizer_checkpoint ? r->optimizer_checkpoint : colon ? colon + 1 : NULL;
        snprintf(buf, size, "%.*s lr scale %g, %s%s", kind, o, base_lr(r), ckpt ? "weights " : "built-in weights",
                 ckpt ? ckpt : "");
        return;
    }
    double wd = run_weight_decay(r);
    int n = snprintf(buf, size, "%.*s lr %g", kind, o, base_lr(r));
    if (wd > 0 && n >= 0 && (size_t)n < size) snprintf(buf + n, size - (size_t)n, " wd %g", wd);
}

bool metrics_open(metrics_log *m, const char *path, bool append, mn_err *err) {
    m->f = NULL, m->write_errno = 0;
    if (!path) return true;
    snprintf(m->path, sizeof m->path, "%s", path);
    m->f = fopen(path, append ? "a" : "w");
    if (!m->f) return mn_err_set(err, "%s: cannot open the metrics log for writing: %s", path, strerror(errno));
    return true;
}

static void metrics_failed(metrics_log *m) {
    if (m->write_errno) return;
    m->write_errno = errno ? errno : EIO;
    fprintf(stderr, "\nerror: cannot write the metrics log %s: %s\n", m->path, strerror(m->write_errno));
}

void metrics_write(metrics_log *m, const char *fmt, ...) {
    if (!m->f) return;
    va_list ap;
    va_start(ap, fmt);
    int n = vfprintf(m->f, fmt, ap);
    va_end(ap);
    if (n < 0 || fputc('\n', m->f) == EOF || fflush(m->f) != 0) metrics_failed(m);
}

bool metrics_close(metrics_log *m) {
    if (m->f && fclose(m->f) != 0) metrics_failed(m);
    m->f = NULL;
    return m->write_errno == 0;
}

bool run_save_state(const char *dir, const run_state *s, const mn_optimizer *o, mn_err *err) {
    if (!mn_make_dirs(dir, err)) return false;
    char path[4096];
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    if (!mn_optim_save(o, path, err)) return false;
    char json[512];
    int n = snprintf(json, sizeof json,
                     "{\n  \"step\": %lld,\n  \"epoch\": %lld,\n  \"batch\": %lld,\n  \"best_metric\": %.17g\n}\n",
                     (long long)s->step, (long long)s->epoch, (long long)s->batch, s->best_metric);
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    return mn_write_file_atomic(path, json, (size_t)n, err);
}

static bool json_int(json_t *root, const char *key, const char *path, int64_t *out, mn_err *err) {
    json_t *v = json_object_get(root, key);
    if (!json_is_integer(v)) return mn_err_set(err, "%s: key \"%s\": expected an integer", path, key);
    *out = json_integer_value(v);
    return true;
}

bool run_load_state(const char *dir, run_state *s, mn_optimizer *o, mn_err *err) {
    char path[4096];
    snprintf(path, sizeof path, "%s/trainer_state.json", dir);
    json_error_t je;
    json_t *root = json_load_file(path, 0, &je);
    if (!root) return mn_err_set(err, "%s: line %d: %s", path, je.line, je.text);
    bool ok = json_is_object(root) && json_int(root, "step", path, &s->step, err) &&
              json_int(root, "epoch", path, &s->epoch, err) && json_int(root, "batch", path, &s->batch, err);
    if (ok) {
        json_t *b = json_object_get(root, "best_metric");
        s->best_metric = json_is_number(b) ? json_number_value(b) : 0;
    } else if (!json_is_object(root)) {
        mn_err_set(err, "%s: expected a JSON object", path);
    }
    json_decref(root);
    if (!ok) return false;
    snprintf(path, sizeof path, "%s/optimizer.safetensors", dir);
    return mn_optim_load(o, path, err);
}
