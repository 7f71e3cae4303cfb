/* meta_train_vit: meta-trains Mnemosyne-T on a task of your own, written here in a few lines on the
 * library's ViT (models/), with the meta-learning API of meta/meta.h.
 *
 * The task: a small ViT classifying 14x14 Fashion-MNIST images. A task tells the trainer how to make
 * fresh parameters from a seed, how to draw a batch and how to compute the loss from a parameter list;
 * mn_params_substitute runs the ViT on that list, so the meta-gradient (PES by default) reaches the
 * optimizer through the real model. Then both the meta-trained and the initial optimizer train a new
 * task from scratch, and the program prints their final losses. */
#include "common/cli.h"
#include "mnemo.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>

/* ---- the task -------------------------------------------------------------------------------------- */
typedef struct {
    mn_meta_task base;   /* first, as meta/ expects */
    mn_vit_config cfg;
    mn_vit *vit;         /* the architecture; its parameters are substituted by the trainer's */
    mn_tensor *x, *y;    /* 14x14 training images [N, 1, 14, 14] and labels (borrowed from the data) */
} vit_task;

static void task_init(const mn_meta_task *t, uint64_t seed, mn_tensor **out) {
    const vit_task *v = (const vit_task *)t;
    mn_rng g = mn_rng_new(seed);
    mn_vit *fresh = mn_vit_new(&v->cfg, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &g);
    mn_scope sc = mn_scope_begin();
    for (int i = 0; i < fresh->params.count; i++) out[i] = mn_retain(mnt_clone(fresh->params.items[i].tensor));
    mn_scope_end(sc);
    mn_vit_free(fresh);
}

static mn_meta_batch task_batch(const mn_meta_task *t, mn_rng *rng) {
    const vit_task *v = (const vit_task *)t;
    int32_t rows[32];
    for (int i = 0; i < 32; i++) rows[i] = (int32_t)mn_rng_below(rng, (uint64_t)mn_size(v->x, 0));
    mn_tensor *idx = mn_from_ints(MN_SHAPE(32), rows);
    return (mn_meta_batch){mn_gather_rows(v->x, idx), mn_gather_rows(v->y, idx), NULL};
}

static mn_tensor *task_loss(const mn_meta_task *t, mn_tensor *const *params, const mn_meta_batch *b) {
    const vit_task *v = (const vit_task *)t;
    mn_params_substitute(&v->vit->params, params);
    mn_tensor *loss = mn_cross_entropy(mn_vit_forward(v->vit, b->x, NULL), b->y, -100, 0.0f);
    mn_params_restore(&v->vit->params);
    return loss;
}

static void task_free(mn_meta_task *t) {
    vit_task *v = (vit_task *)t;
    mn_vit_free(v->vit);
    mn_vit_config_free(&v->cfg);
    free(v);
}

static const mn_meta_task_vt task_vt = {.init = task_init, .batch = task_batch, .loss = task_loss, .free = task_free};

/* The family: every seed names a ViT of width 16 or 32 with 1 or 2 blocks. */
typedef struct {
    mn_meta_family base;
    mn_tensor *x, *y;
} vit_family;

static mn_meta_task *family_sample(const mn_meta_family *f, uint64_t seed) {
    const vit_family *vf = (const vit_family *)f;
    vit_task *v = calloc(1, sizeof *v);
    if (!v) mn_fatal("meta_train_vit: out of memory");
    mn_vit_config_named("vit-fm", &v->cfg);
    v->cfg.image_size = 14, v->cfg.patch_size = 2;
    v->cfg.hidden_size = seed % 2 ? 32 : 16, v->cfg.num_hidden_layers = 1 + (int64_t)(seed / 2 % 2);
    v->cfg.num_attention_heads = 2, v->cfg.intermediate_size = 2 * v->cfg.hidden_size;
    mn_rng g = mn_rng_new(0);
    v->vit = mn_vit_new(&v->cfg, MN_VIT_FOR_IMAGE_CLASSIFICATION, false, &g);
    v->x = vf->x, v->y = vf->y;
    v->base.vt = &task_vt;
    v->base.n_params = v->vit->params.count;
    snprintf(v->base.desc, sizeof v->base.desc, "vit 14x14 dim%lld depth%lld", (long long)v->cfg.hidden_size,
             (long long)v->cfg.num_hidden_layers);
    return &v->base;
}

static void family_free(mn_meta_family *f) { free(f); }

/* Trains a fresh task of the family with o for steps steps; the mean training loss of the last tenth. */
static double train_fresh(const mn_lopt *o, const mn_meta_family *f, uint64_t seed, int steps) {
    mn_task_run *r = mn_task_run_new(f->sample(f, seed), seed, o, steps);
    double tail = 0;
    for (int s = 0; s < steps; s++) {
        double loss = mn_meta_inner_step(o, r, 1.0f, false, NULL);
        if (s >= steps - steps / 10) tail += loss / (steps / 10);
    }
    mn_task_run_free(r);
    return tail;
}

int main(int argc, char **argv) {
    long iterations = 20, tasks = 2, pairs = 2, unroll = 20, horizon = 200, steps = 300, threads = 2, seed = 0;
    const char *estimator = "pes", *out = "meta_train_vit.safetensors", *data_dir = NULL;
    cli_opt opts[] = {
        {"--iterations", CLI_INT, &iterations, "meta-iterations", 1, 1e9},
        {"--tasks", CLI_INT, &tasks, "tasks per meta-iteration", 1, 1024},
        {"--unroll", CLI_INT, &unroll, "inner steps per truncation", 1, 100000},
        {"--horizon", CLI_INT, &horizon, "inner steps before a task is replaced", 1, 1e9},
        {"--estimator", CLI_STRING, &estimator, "tbptt, pes or es"},
        {"--pairs", CLI_INT, &pairs, "pes, es: antithetic particle pairs per task", 1, 4096},
        {"--task-threads", CLI_INT, &threads, "tasks estimated at once", 1, 1024},
        {"--eval-steps", CLI_INT, &steps, "steps of the final comparison on a new task", 10, 1e9},
        {"--seed", CLI_INT, &seed, "seed of the task sampling", 0, 9e15},
        {"--out", CLI_STRING, &out, "where the meta-trained optimizer is saved"},
        {"--data-dir", CLI_STRING, &data_dir, "Fashion-MNIST directory (default " MN_FASHION_MNIST_DIR ")"},
    };
    cli_spec spec = {"meta_train_vit", "[options]",
                     "Meta-trains the built-in Mnemosyne-T further on small ViTs of your own task family (defined\n"
                     "in this file on the library's ViT), then trains a new task with the meta-trained and with the\n"
                     "initial weights and prints both final training losses.",
                     opts, (int)(sizeof opts / sizeof opts[0])};
    int rc = cli_parse(&spec, argc, argv, NULL, 0, NULL);
    if (rc) return rc == 1 ? 0 : 2;
    mn_estimator_kind kind;
    if (!mn_estimator_kind_parse(estimator, &kind)) {
        fprintf(stderr, "meta_train_vit: unknown --estimator '%s' (tbptt, pes or es)\n", estimator);
        return 2;
    }
    mn_err err;
    mn_meta_data *data = mn_meta_data_new(data_dir, NULL, ".", 0);
    vit_family *f = calloc(1, sizeof *f);
    mn_lopt *o = mn_lopt_pretrained(MN_LOPT_MNEMOSYNE_T, &err), *initial = o ? mn_lopt_clone(o) : NULL;
    if (!f || !o || !mn_meta_data_images(data, 14, true, &f->x, &f->y, &err)) {
        fprintf(stderr, "meta_train_vit: %s\n", f && o ? err.msg : "cannot start");
        return 1;
    }
    snprintf(f->base.name, sizeof f->base.name, "my-vits");
    f->base.sample = family_sample;
    f->base.free = family_free;

    mn_meta_trainer_opts to = mn_meta_trainer_default_opts();
    to.tasks = (int)tasks, to.task_threads = (int)threads, to.seed = (uint64_t)seed;
    to.estimator.kind = kind, to.estimator.unroll.steps = (int)unroll, to.estimator.pairs = (int)pairs;
    to.horizon = MN_HORIZON_CONSTANT, to.horizon_min = to.horizon_max = horizon;
    to.meta_lr = 3e-4f;
    mn_meta_trainer *tr = mn_meta_trainer_new(o, &f->base, &to);
    double start = omp_get_wtime();
    int64_t inner = 0;
    for (long it = 0; it < iterations; it++) {
        mn_meta_stats st;
        mn_meta_trainer_iterate(tr, &st);
        double elapsed = omp_get_wtime() - start;
        inner += st.inner_steps;
        printf("iteration %ld/%ld  meta-loss %.4f  train loss %.4f  %.0f inner steps/s  elapsed %.0fs  ETA %.0fs\n",
               it + 1, iterations, st.meta_loss, st.train_loss, (double)inner / elapsed, elapsed,
               elapsed / (double)(it + 1) * (double)(iterations - it - 1));
        fflush(stdout);
    }
    mn_meta_trainer_free(tr);
    if (!mn_lopt_save(o, out, &err)) fprintf(stderr, "meta_train_vit: %s\n", err.msg);
    double before = train_fresh(initial, &f->base, 12345, (int)steps), after = train_fresh(o, &f->base, 12345, (int)steps);
    printf("a new task, %ld steps: final train loss %.4f with the built-in weights, %.4f meta-trained (saved to %s)\n",
           steps, before, after, out);
    mn_lopt_free(o), mn_lopt_free(initial);
    mn_meta_family_free(&f->base);
    mn_meta_data_free(data);
    return 0;
}
