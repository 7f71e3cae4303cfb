/* The training loop the example programs share (examples/common/trainer.c, classify.c), through the
 * programs as a user runs them: a run stopped with --stop-at and continued with --resume logs the same
 * losses and ends with the same test result as one that never stopped (train_mlp for the image loop,
 * bert_pretrain and bert_finetune for the text loops); a resume with other options, or from a
 * checkpoint one of whose files was changed, is refused with a message; a diverging run stops with
 * one; a finished run resumed says so; a run killed while saving resumes exactly.
 * Tiny models and few steps keep it fast. The programs are found next to this test (build/CFG/tests ->
 * build/CFG/examples); a test is skipped when its program is not built or its data is not installed. */
#include "testutil.h"

#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

static char examples_dir[PATH_MAX + 16]; /* build/CFG/examples */
static char work_dir[] = "/tmp/test_train_cli_XXXXXX";

static bool exists(const char *path) {
    struct stat st;
    return stat(path, &st) == 0;
}

static int make_work_dir(void **state) {
    (void)state;
    char build[PATH_MAX];
    if (!tu_build_dir(build, sizeof build)) return -1;
    snprintf(examples_dir, sizeof examples_dir, "%s/examples", build);
    return mkdtemp(work_dir) ? 0 : -1;
}

static int remove_work_dir(void **state) {
    (void)state;
    return tu_remove_tree(work_dir);
}

/* Skips the test unless program is built and the data it reads is installed. */
static void need(const char *program, const char *data) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s", examples_dir, program);
    if (!exists(path) || !exists(data)) skip();
}

typedef struct {
    char out[1 << 16]; /* stdout and stderr (the end of them, if longer) */
    int status;
} run_result;

/* Runs "program args" in the work directory. */
static void run(const char *program, const char *args, run_result *r) {
    char cmd[4 * PATH_MAX];
    snprintf(cmd, sizeof cmd, "cd '%s' && OMP_WAIT_POLICY=passive '%s/%s' --threads 1 %s 2>&1", work_dir,
             examples_dir, program, args);
    FILE *p = popen(cmd, "r");
    assert_non_null(p);
    size_t len = 0, got;
    char buf[4096];
    while ((got = fread(buf, 1, sizeof buf, p)) > 0) {
        if (len + got >= sizeof r->out) len = 0; /* keep the end */
        memcpy(r->out + len, buf, got);
        len += got;
    }
    r->out[len] = 0;
    int st = pclose(p);
    r->status = WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void run_ok(const char *program, const char *args) {
    static run_result r;
    run(program, args, &r);
    if (r.status != 0) fail_msg("%s %s: exit status %d:\n%s", program, args, r.status, r.out);
}

/* The records of dir/metrics.jsonl that contain key, each cut before cut_at (timings), one per line. */
static char *records(const char *dir, const char *key, const char *cut_at) {
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/%s/metrics.jsonl", work_dir, dir);
    FILE *f = fopen(path, "r");
    if (!f) fail_msg("cannot read %s", path);
    size_t cap = 1 << 16, len = 0;
    char *out = calloc(cap, 1), line[4096];
    while (fgets(line, sizeof line, f)) {
        if (!strstr(line, key)) continue;
        char *cut = cut_at ? strstr(line, cut_at) : NULL;
        if (cut) strcpy(cut, "\n");
        size_t n = strlen(line);
        assert_true(len + n < cap);
        memcpy(out + len, line, n + 1);
        len += n;
    }
    fclose(f);
    return out;
}

/* The two runs' records with key are identical (and there are some). */
static void same_records(const char *a, const char *b, const char *key, const char *cut_at) {
    char *ra = records(a, key, cut_at), *rb = records(b, key, cut_at);
    if (!*ra) fail_msg("%s/metrics.jsonl has no records with %s", a, key);
    if (strcmp(ra, rb)) fail_msg("uninterrupted run:\n%sresumed run:\n%s", ra, rb);
    free(ra);
    free(rb);
}

/* Runs args once to the end (into out_a), and once stopped after stop_at and resumed (into out_b). */
static void run_whole_and_resumed(const char *program, const char *args, const char *out_a, const char *out_b,
                                  const char *save, int stop_at) {
    char a[2048];
    snprintf(a, sizeof a, "%s --out %s", args, out_a);
    run_ok(program, a);
    snprintf(a, sizeof a, "%s --out %s --save %s --stop-at %d", args, out_b, save, stop_at);
    run_ok(program, a);
    snprintf(a, sizeof a, "%s --out %s --save %s --resume %s", args, out_b, save, save);
    run_ok(program, a);
}

/* the last record of a run of 6 steps (a run stopped early writes its own, of an earlier step) */
#define FINAL "\"final\": true, \"step\": 6,"

#define MLP_ARGS "--steps 6 --batch 32 --hidden 16 --log-every 1 --eval-every 100"

static void mlp_resumed_run_continues_exactly(void **state) {
    (void)state;
    need("train_mlp", MN_FASHION_MNIST_DIR);
    run_whole_and_resumed("train_mlp", MLP_ARGS, "mlp_a", "mlp_b", "mlp_ck", 3);
    same_records("mlp_a", "mlp_b", "\"loss\"", ", \"images_per_s\"");
    same_records("mlp_a", "mlp_b", FINAL, ", \"mean_epoch_seconds\"");
}

static void resume_with_other_options_is_refused(void **state) {
    (void)state;
    need("train_mlp", MN_FASHION_MNIST_DIR);
    run_ok("train_mlp", MLP_ARGS " --out mlp_c --save mlp_ck2 --stop-at 2");
    run_result r;
    run("train_mlp", "--steps 6 --batch 16 --hidden 16 --log-every 1 --out mlp_c --resume mlp_ck2", &r);
    assert_int_equal(r.status, 1);
    if (!strstr(r.out, "cannot resume from mlp_ck2") || !strstr(r.out, "batch"))
        fail_msg("expected a refusal naming the batch option, got:\n%s", r.out);
}

static void diverging_run_stops_with_a_message(void **state) {
    (void)state;
    need("train_mlp", MN_FASHION_MNIST_DIR);
    run_result r;
    run("train_mlp", "--steps 20 --hidden 16 --optimizer sgd:1e6 --out mlp_div", &r);
    assert_int_equal(r.status, 1);
    if (!strstr(r.out, "the loss diverged at step")) fail_msg("no divergence message in:\n%s", r.out);
}

#define BERT_ARGS                                                                                         \
    "--categories food,love --hidden 32 --layers 1 --heads 1 --intermediate 64 --max-len 16 --vocab-size 300 " \
    "--eval-max 20 --eval-every 100 --steps 6 --batch 8 --log-every 1"

static void bert_pretrain_resumed_run_continues_exactly(void **state) {
    (void)state;
    need("bert_pretrain", MN_FORTUNES_DIR "/food");
    run_whole_and_resumed("bert_pretrain", BERT_ARGS, "bp_a", "bp_b", "bp_ck", 3);
    same_records("bp_a", "bp_b", "\"loss\"", ", \"tokens_per_s\"");
    same_records("bp_a", "bp_b", FINAL, NULL);
}

/* bert_finetune's starting point: bert_pretrain's checkpoint bp_ck (made here when no test made it). */
static void need_pretrained_bert(void) {
    need("bert_finetune", MN_FORTUNES_DIR "/food");
    char checkpoint[PATH_MAX + 64];
    snprintf(checkpoint, sizeof checkpoint, "%s/bp_ck/model.safetensors", work_dir);
    if (!exists(checkpoint)) run_ok("bert_pretrain", BERT_ARGS " --out bp_x --save bp_ck");
}

static void bert_finetune_resumed_run_continues_exactly(void **state) {
    (void)state;
    need_pretrained_bert();
    const char *args = "--model bp_ck --categories food,love --max-len 16 --steps 6 --batch 8 --log-every 1 "
                       "--eval-every 100";
    run_whole_and_resumed("bert_finetune", args, "bf_a", "bf_b", "bf_ck", 4);
    same_records("bf_a", "bf_b", "\"loss\"", NULL);
    same_records("bf_a", "bf_b", FINAL, NULL);
}

/* A file of a checkpoint changed after it was written (here the trainer state, pointing outside an
 * epoch) is refused by its manifest before anything is read from it. */
static void tampered_checkpoint_is_refused(void **state) {
    (void)state;
    need("bert_pretrain", MN_FORTUNES_DIR "/food");
    run_ok("bert_pretrain", BERT_ARGS " --out bp_c --save bp_ck2 --stop-at 2");
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/bp_ck2/trainer_state.json", work_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    fputs("{\"step\": 2, \"epoch\": 0, \"batch\": 99999, \"best_metric\": 0}\n", f);
    fclose(f);
    run_result r;
    run("bert_pretrain", BERT_ARGS " --out bp_c --resume bp_ck2", &r);
    assert_int_equal(r.status, 1);
    if (!strstr(r.out, "trainer_state.json is") || !strstr(r.out, "does not belong to this checkpoint"))
        fail_msg("expected a refusal naming trainer_state.json, got:\n%s", r.out);
}

/* Resuming a run that already reached its last step trains nothing and claims no save. */
static void resuming_a_finished_run_says_so(void **state) {
    (void)state;
    need("train_mlp", MN_FASHION_MNIST_DIR);
    run_ok("train_mlp", MLP_ARGS " --out mlp_f --save mlp_fin");
    run_result r;
    run("train_mlp", MLP_ARGS " --out mlp_f2 --save mlp_fin --resume mlp_fin", &r);
    if (r.status != 0) fail_msg("exit status %d:\n%s", r.status, r.out);
    if (!strstr(r.out, "already finished") || strstr(r.out, "saved the model"))
        fail_msg("expected the notice that the run is finished and no claim of a save, got:\n%s", r.out);
}

static char *read_all(const char *path, size_t *n) {
    FILE *f = fopen(path, "rb");
    if (!f) return NULL;
    char *buf = malloc(1 << 22);
    *n = fread(buf, 1, 1 << 22, f);
    fclose(f);
    return buf;
}

/* train_mlp saving at every step is killed (SIGKILL) at a random moment, then resumed to the end:
 * every try must either be refused with a message (killed before its first checkpoint was complete) or end with
 * the uninterrupted run's model, byte for byte, and its final test result. MNEMO_KILL_TRIES sets the
 * number of tries (default 12). */
#define KILL_ARGS "--steps 24 --batch 32 --hidden 16 --log-every 1 --eval-every 100 --save-every 1"

static void killed_saves_resume_exactly_or_are_refused(void **state) {
    (void)state;
    need("train_mlp", MN_FASHION_MNIST_DIR);
    run_ok("train_mlp", KILL_ARGS " --out kill_ref --save kill_ref_ck");
    char path[PATH_MAX + 64], *ref_final = records("kill_ref", "\"final\"", ", \"mean_epoch_seconds\"");
    size_t ref_n = 0, got_n = 0;
    snprintf(path, sizeof path, "%s/kill_ref_ck/model.safetensors", work_dir);
    char *ref_model = read_all(path, &ref_n);
    assert_non_null(ref_model);
    const char *env = getenv("MNEMO_KILL_TRIES");
    int tries = env ? atoi(env) : 12, resumed = 0, refused = 0;
    uint64_t rng = 0x9e3779b97f4a7c15ull;
    for (int k = 0; k < tries; k++) {
        char cmd[4 * PATH_MAX], out[64];
        snprintf(cmd, sizeof cmd, "cd '%s' && rm -rf kill_ck kill_ck.tmp kill_ck.old kill_out && "
                 "OMP_WAIT_POLICY=passive exec '%s/train_mlp' --threads 1 " KILL_ARGS " --out kill_out --save kill_ck "
                 "> /dev/null 2>&1", work_dir, examples_dir);
        pid_t pid = fork();
        assert_true(pid >= 0);
        if (pid == 0) {
            execl("/bin/sh", "sh", "-c", cmd, (char *)NULL);
            _exit(127);
        }
        /* from the first save on (the data loading before it is most of a run), 0 to 200 ms later: the
         * 24 saves take about 150 ms */
        snprintf(path, sizeof path, "%s/kill_ck.tmp", work_dir);
        for (int wait = 0; wait < 5000 && !exists(path); wait++) usleep(1000);
        rng = rng * 6364136223846793005ull + 1442695040888963407ull;
        usleep((useconds_t)((rng >> 33) % 200000));
        kill(pid, SIGKILL);
        waitpid(pid, NULL, 0);
        snprintf(out, sizeof out, "kill_res%d", k);
        char args[1024];
        snprintf(args, sizeof args, KILL_ARGS " --out %s --save kill_ck --resume kill_ck", out);
        run_result r;
        run("train_mlp", args, &r);
        if (r.status != 0) {
            if (!strstr(r.out, "cannot resume: kill_ck: no such checkpoint directory"))
                fail_msg("try %d: the resume failed without a clear refusal:\n%s", k, r.out);
            refused++;
            continue;
        }
        snprintf(path, sizeof path, "%s/kill_ck/model.safetensors", work_dir);
        char *model = read_all(path, &got_n);
        if (!model || got_n != ref_n || memcmp(model, ref_model, ref_n))
            fail_msg("try %d: the resumed run's model differs from the uninterrupted run's:\n%s", k, r.out);
        free(model);
        char *fin = records(out, "\"final\"", ", \"mean_epoch_seconds\"");
        if (strcmp(fin, ref_final)) fail_msg("try %d: final record\n%sexpected\n%s", k, fin, ref_final);
        free(fin);
        resumed++;
    }
    print_message("%d tries: %d resumed exactly, %d refused (killed before the first checkpoint)\n", tries, resumed,
                  refused);
    assert_true(resumed > 0);
    free(ref_model);
    free(ref_final);
}

/* Writes n grey 28x28 images and their labels as IDX files in the work directory. */
static void write_idx(const char *images, const char *labels, int n, const unsigned char *label) {
    char path[PATH_MAX + 64];
    unsigned char head[16] = {0, 0, 8, 3, 0, 0, 0, (unsigned char)n, 0, 0, 0, 28, 0, 0, 0, 28};
    snprintf(path, sizeof path, "%s/%s", work_dir, images);
    FILE *f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(head, 1, 16, f);
    for (int i = 0; i < n * 784; i++) fputc((i * 37 + i / 784) & 255, f);
    assert_int_equal(fclose(f), 0);
    unsigned char lhead[8] = {0, 0, 8, 1, 0, 0, 0, (unsigned char)n};
    snprintf(path, sizeof path, "%s/%s", work_dir, labels);
    f = fopen(path, "wb");
    assert_non_null(f);
    fwrite(lhead, 1, 8, f);
    fwrite(label, 1, (size_t)n, f);
    assert_int_equal(fclose(f), 0);
}

/* IDX labels number the classes 0..K-1: one stray label 200 among 0s and 1s is an error naming it and
 * its place, not 201 classes; the same files without it train. */
static void idx_label_gap_is_refused(void **state) {
    (void)state;
    char model[PATH_MAX + 64];
    snprintf(model, sizeof model, "%s/../../../tests/golden/vit", examples_dir);
    need("vit_finetune", model);
    unsigned char labels[8] = {0, 1, 0, 1, 0, 200, 1, 0};
    write_idx("gap_x.idx", "gap_y.idx", 8, labels);
    char args[2 * PATH_MAX];
    snprintf(args, sizeof args, "--model '%s' --idx-images gap_x.idx --idx-labels gap_y.idx --steps 1 --batch 4 "
             "--out gap_out --save gap_ck", model);
    run_result r;
    run("vit_finetune", args, &r);
    if (r.status != 1 || !strstr(r.out, "gap_y.idx: label 200 at byte offset 13 implies 201 classes"))
        fail_msg("expected a refusal naming label 200, got status %d:\n%s", r.status, r.out);
    labels[5] = 1;
    write_idx("gap_x.idx", "gap_y.idx", 8, labels);
    run("vit_finetune", args, &r);
    if (r.status != 0) fail_msg("labels 0 and 1: exit status %d:\n%s", r.status, r.out);
}

/* A metrics log that cannot be written (a full disk) makes the run fail with a message. */
static void unwritable_log_is_an_error(void **state) {
    (void)state;
    need("train_mlp", MN_FASHION_MNIST_DIR);
    run_result r;
    run("train_mlp", "--steps 3 --batch 16 --hidden 8 --log-every 1 --eval-every 100 --out full_out --log /dev/full",
        &r);
    if (r.status != 1 || !strstr(r.out, "cannot write the metrics log /dev/full"))
        fail_msg("expected a failed run naming the log, got status %d:\n%s", r.status, r.out);
}

/* --threads above the cores is capped to them with a warning, and the run goes on. */
static void too_many_threads_are_capped(void **state) {
    (void)state;
    need("train_mlp", MN_FASHION_MNIST_DIR);
    run_result r;
    run("train_mlp", "--threads 1000 --steps 2 --batch 16 --hidden 8 --eval-every 100 --out threads_out", &r);
    if (r.status != 0 || !strstr(r.out, "--threads 1000 is more than the") || strstr(r.out, "1000 threads"))
        fail_msg("expected a capped run with a warning, got status %d:\n%s", r.status, r.out);
}

/* What the banner says is what runs: --lr scales a learned optimizer's step (a different run, and the
 * banner says so); --weight-decay is only remarked on when given; a --warmup spanning the run is warned
 * about, and a program's default warm-up is cut to a tenth of a short run. */
static void options_say_what_they_do(void **state) {
    (void)state;
    need("train_mlp", MN_FASHION_MNIST_DIR);
    run_result a, b;
    const char *base = "--steps 12 --batch 16 --hidden 8 --log-every 1 --eval-every 100 --optimizer mnemosyne-t";
    char args[2 * PATH_MAX];
    snprintf(args, sizeof args, "%s --out lr_a", base);
    run("train_mlp", args, &a);
    snprintf(args, sizeof args, "%s --out lr_b --lr 0.25", base);
    run("train_mlp", args, &b);
    if (a.status || b.status) fail_msg("exit status %d / %d:\n%s\n%s", a.status, b.status, a.out, b.out);
    if (!strstr(a.out, "mnemosyne-t lr scale 1,") || !strstr(b.out, "mnemosyne-t lr scale 0.25,"))
        fail_msg("banners do not name the step scale:\n%s\n%s", a.out, b.out);
    char *ra = records("lr_a", "\"final\"", ", \"mean_epoch_seconds\""), *rb = records("lr_b", "\"final\"",
                                                                                        ", \"mean_epoch_seconds\"");
    if (!strcmp(ra, rb)) fail_msg("--lr 0.25 gave the same run as the default:\n%s", ra);
    free(ra), free(rb);
    if (strstr(a.out, "--weight-decay")) fail_msg("a note on --weight-decay that was not given:\n%s", a.out);
    /* the log opens with a record naming the run and what it used */
    char log[PATH_MAX + 64];
    snprintf(log, sizeof log, "%s/lr_b/metrics.jsonl", work_dir);
    size_t n = 0;
    char *text = read_all(log, &n);
    assert_non_null(text);
    text[n < (1 << 22) ? n : (1 << 22) - 1] = 0;
    static const char head[] = "{\"run\":\"train_mlp\",\"first_step\":1,\"last_step\":12,";
    if (strncmp(text, head, sizeof head - 1) ||
        !strstr(text, "\"optimizer\":\"mnemosyne-t lr scale 0.25, built-in weights\"") || strchr(text, '\n') > strstr(text, "\"step\""))
        fail_msg("the log does not open with the run's header:\n%.400s", text);
    free(text);
    snprintf(args, sizeof args, "%s --out lr_c --weight-decay 0.1 --warmup 50", base);
    run("train_mlp", args, &a);
    if (a.status || !strstr(a.out, "--weight-decay applies to adamw only") ||
        !strstr(a.out, "--warmup 50 spans the whole run of 12 steps"))
        fail_msg("expected the weight-decay note and the warm-up warning:\n%s", a.out);
    char model[PATH_MAX + 64];
    snprintf(model, sizeof model, "%s/../../../tests/golden/vit", examples_dir);
    unsigned char labels[8] = {0, 1, 0, 1, 0, 1, 1, 0};
    write_idx("wu_x.idx", "wu_y.idx", 8, labels);
    snprintf(args, sizeof args, "--model '%s' --idx-images wu_x.idx --idx-labels wu_y.idx --steps 30 --batch 4 "
             "--out wu_out --save wu_ck", model);
    run("vit_finetune", args, &a);
    if (a.status || !strstr(a.out, "warm-up shortened from the default 20 steps to 3") || !strstr(a.out, "warm-up 3)"))
        fail_msg("expected the default warm-up cut to 3 steps:\n%s", a.out);
    if (!strstr(a.out, "the 28 x 28 images with 1 channel are converted to the model's 8 x 8 with 3 channels"))
        fail_msg("expected a notice that the images are converted:\n%s", a.out);
}

/* bert_pretrain --text FILE pre-trains on one's own corpus, one document per line. */
static void bert_pretrain_reads_a_text_file(void **state) {
    (void)state;
    need("bert_pretrain", "/");
    char path[PATH_MAX + 64];
    snprintf(path, sizeof path, "%s/corpus.txt", work_dir);
    FILE *f = fopen(path, "w");
    assert_non_null(f);
    for (int i = 0; i < 60; i++) fprintf(f, "document %d says the cat sat on the mat %d times\n", i, i % 7);
    assert_int_equal(fclose(f), 0);
    run_result r;
    run("bert_pretrain", "--text corpus.txt --steps 4 --batch 8 --vocab-size 100 --max-len 16 --eval-every 4 "
        "--eval-fraction 0.1 --out bp_text", &r);
    if (r.status != 0 || !strstr(r.out, "60 documents (lines) in corpus.txt: 54 for training, 6 held out"))
        fail_msg("expected a run on the 60 lines, got status %d:\n%s", r.status, r.out);
}

/* The step of a run's best "val_accuracy" record (the first of equal ones) and that accuracy. */
static long best_val_step(const char *dir, double *best) {
    char *rec = records(dir, "\"val_accuracy\"", NULL);
    long step = -1;
    *best = -1;
    for (char *line = rec; line && *line;) {
        char *end = strchr(line, '\n');
        const char *sp = strstr(line, "\"step\": "), *ac = strstr(line, "\"val_accuracy\": ");
        if (sp && ac) {
            double a = strtod(ac + strlen("\"val_accuracy\": "), NULL);
            if (a > *best) *best = a, step = strtol(sp + strlen("\"step\": "), NULL, 10);
        }
        line = end ? end + 1 : NULL;
    }
    free(rec);
    return step;
}

/* The run in dir_best (--keep best) printed out and saved the weights of its best validation: the
 * printed accuracy is the records' best, and the saved model equals, byte for byte, the model of a run
 * with the same options stopped at that step (prefix: the common options, ckpt: the run's --save). */
static void kept_the_best(const char *program, const char *prefix, const run_result *r, const char *dir_best,
                          const char *ckpt) {
    double best;
    long step = best_val_step(dir_best, &best);
    char want[128];
    snprintf(want, sizeof want, "best validation accuracy, %.4f", best);
    if (step < 0 || !strstr(r->out, want)) fail_msg("expected \"%s\" (step %ld) in:\n%s", want, step, r->out);
    char args[4 * PATH_MAX], pa[PATH_MAX + 64], pb[PATH_MAX + 64];
    snprintf(args, sizeof args, "%s --keep last --out kb_at --save kb_ck_at --stop-at %ld", prefix, step);
    run_ok(program, args);
    snprintf(pa, sizeof pa, "%s/%s/model.safetensors", work_dir, ckpt);
    snprintf(pb, sizeof pb, "%s/kb_ck_at/model.safetensors", work_dir);
    size_t na = 0, nb = 0;
    char *a = read_all(pa, &na), *b = read_all(pb, &nb);
    if (!a || !b || na != nb || memcmp(a, b, na) != 0)
        fail_msg("%s: the model kept by --keep best differs from the model at its best step %ld", program, step);
    free(a), free(b);
}

/* vit_finetune --val-fraction --keep best: evaluations during training use the validation images, the
 * run ends with (and saves) the weights of the best validation accuracy and tests them once; stopped
 * and resumed it ends the same, byte for byte; --keep best without a validation set is refused. */
static void keep_best_uses_the_validation_set(void **state) {
    (void)state;
    char model[PATH_MAX + 64];
    snprintf(model, sizeof model, "%s/../../../tests/golden/vit", examples_dir);
    need("vit_finetune", model);
    unsigned char labels[40];
    for (int i = 0; i < 40; i++) labels[i] = (unsigned char)((i * 7 + i / 3) % 2);
    write_idx("kb_x.idx", "kb_y.idx", 40, labels);
    char base[2 * PATH_MAX], args[3 * PATH_MAX];
    snprintf(base, sizeof base, "--model '%s' --idx-images kb_x.idx --idx-labels kb_y.idx --steps 12 --batch 8 "
             "--eval-every 3 --save-every 3 --val-fraction 0.25 --lr 0.01", model);
    run_result r;
    snprintf(args, sizeof args, "%s --keep best --out kb_a --save kb_ck_a", base);
    run("vit_finetune", args, &r);
    if (r.status != 0 || !strstr(r.out, "keeping the weights of the best validation accuracy") ||
        !strstr(r.out, "val loss") || !strstr(r.out, "validation set"))
        fail_msg("expected a run validated on the held-out images and ending with the best, got %d:\n%s", r.status,
                 r.out);
    char *val = records("kb_a", "\"val_accuracy\"", ", \"eval_seconds\""), *fin = records("kb_a", "\"final\"",
                                                                                           ", \"mean_epoch_seconds\"");
    if (!strstr(val, "\"step\": 12") || strstr(fin, "\"val_")) fail_msg("records:\n%s\n%s", val, fin);
    free(val), free(fin);
    kept_the_best("vit_finetune", base, &r, "kb_a", "kb_ck_a");
    snprintf(args, sizeof args, "%s --keep best --out kb_b --save kb_ck_b --stop-at 6", base);
    run_ok("vit_finetune", args);
    snprintf(args, sizeof args, "%s --keep best --out kb_b2 --save kb_ck_b --resume kb_ck_b", base);
    run_ok("vit_finetune", args);
    same_records("kb_a", "kb_b2", "\"final\"", ", \"mean_epoch_seconds\"");
    char pa[PATH_MAX + 64], pb[PATH_MAX + 64];
    snprintf(pa, sizeof pa, "%s/kb_ck_a/model.safetensors", work_dir);
    snprintf(pb, sizeof pb, "%s/kb_ck_b/model.safetensors", work_dir);
    size_t na = 0, nb = 0;
    char *a = read_all(pa, &na), *b = read_all(pb, &nb);
    assert_true(a && b && na == nb && memcmp(a, b, na) == 0);
    free(a), free(b);
    snprintf(args, sizeof args, "--model '%s' --idx-images kb_x.idx --idx-labels kb_y.idx --steps 2 --keep best "
             "--out kb_c", model);
    run("vit_finetune", args, &r);
    if (r.status != 2 || !strstr(r.out, "--keep best needs a validation set"))
        fail_msg("expected --keep best alone refused, got %d:\n%s", r.status, r.out);
}

/* bert_finetune --val-fraction --keep best, as vit_finetune: validated on held-out training texts, ending
 * with (and saving) the best weights, the same after a stop and resume. */
static void bert_keep_best_uses_the_validation_set(void **state) {
    (void)state;
    need_pretrained_bert();
    const char *base = "--model bp_ck --categories food,love --max-len 16 --steps 12 --batch 8 --eval-every 3 "
                       "--save-every 3 --val-fraction 0.2 --lr 0.003";
    char args[2048];
    run_result r;
    snprintf(args, sizeof args, "%s --keep best --out bk_a --save bk_ck_a", base);
    run("bert_finetune", args, &r);
    if (r.status != 0 || !strstr(r.out, "validation and") || !strstr(r.out, "val accuracy"))
        fail_msg("expected a run validated on held-out texts, got %d:\n%s", r.status, r.out);
    char *fin = records("bk_a", "\"final\"", NULL);
    if (!strstr(fin, "\"test_accuracy\"")) fail_msg("final record:\n%s", fin);
    free(fin);
    kept_the_best("bert_finetune", base, &r, "bk_a", "bk_ck_a");
    snprintf(args, sizeof args, "%s --keep best --out bk_b --save bk_ck_b --stop-at 6", base);
    run_ok("bert_finetune", args);
    snprintf(args, sizeof args, "%s --keep best --out bk_b2 --save bk_ck_b --resume bk_ck_b", base);
    run_ok("bert_finetune", args);
    same_records("bk_a", "bk_b2", "\"final\"", NULL);
    snprintf(args, sizeof args, "--model bp_ck --categories food,love --steps 2 --keep best --out bk_c");
    run("bert_finetune", args, &r);
    if (r.status != 2 || !strstr(r.out, "--keep best needs a validation set"))
        fail_msg("expected --keep best alone refused, got %d:\n%s", r.status, r.out);
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(mlp_resumed_run_continues_exactly),
        cmocka_unit_test(resume_with_other_options_is_refused),
        cmocka_unit_test(diverging_run_stops_with_a_message),
        cmocka_unit_test(bert_pretrain_resumed_run_continues_exactly),
        cmocka_unit_test(bert_finetune_resumed_run_continues_exactly),
        cmocka_unit_test(tampered_checkpoint_is_refused),
        cmocka_unit_test(resuming_a_finished_run_says_so),
        cmocka_unit_test(killed_saves_resume_exactly_or_are_refused),
        cmocka_unit_test(idx_label_gap_is_refused),
        cmocka_unit_test(unwritable_log_is_an_error),
        cmocka_unit_test(too_many_threads_are_capped),
        cmocka_unit_test(options_say_what_they_do),
        cmocka_unit_test(bert_pretrain_reads_a_text_file),
        cmocka_unit_test(keep_best_uses_the_validation_set),
        cmocka_unit_test(bert_keep_best_uses_the_validation_set),
    };
    return cmocka_run_group_tests(tests, make_work_dir, remove_work_dir);
}
