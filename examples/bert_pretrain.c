/* bert_pretrain: masked-language-model pre-training of a small BERT on the fortunes corpus.
 *
 * The corpus is split into training and held-out texts; a WordPiece vocabulary is built
 * from the training texts (or read with --vocab); every batch is masked afresh (15% of the
 * tokens: 80% [MASK], 10% random, 10% kept) and the loss is the masked-LM cross-entropy,
 * computed by mn_bert_mlm_loss on the masked rows only. The held-out loss uses one fixed
 * masking, so its values are comparable across the run. Randomness is drawn per step from
 * (seed, step), so a run resumed from --save continues exactly. */
#include "common/bert_util.h"
#include "common/cli.h"
#include "common/progress.h"
#include "common/run.h"
#include "common/svgplot.h"
#include "common/text.h"
#include "common/trainer.h"
#include "common/trainlog.h"
#include "data/data.h"
#include "mnemo.h"

#include <errno.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "bert_pretrain";
/* --help: what the program does */
static const char *about =
    "Masked-LM pre-training of BERT on the fortunes corpus, or on your own text file (--text FILE,\n"
    "one document per line). Defaults: a bert-tiny model (hidden 128, 2 layers, 2 heads, intermediate\n"
    "512) with max length 64 and a 6000-piece vocabulary built from the corpus (all categories but\n"
    "ascii-art, 5% held out); 1500 AdamW steps of 32 texts (lr 1e-3, linear decay, 40 warm-up steps),\n"
    "about 400 CPU-seconds: a few minutes on 2 idle cores (with\n"
    "OMP_WAIT_POLICY=passive when the machine is shared). --save DIR writes a Hugging Face directory\n"
    "(config.json, model.safetensors, vocab.txt, tokenizer_config.json) plus the trainer state for\n"
    "--resume, which continues exactly when given the same options.";

/* the random streams of a run (train_stream) */
enum { STREAM_INIT = 1, STREAM_MASK, STREAM_DROPOUT, STREAM_EVAL_MASK, STREAM_SPLIT };

/* The held-out texts, masked once: input_ids masked, labels [N, max_len]. */
static void heldout_init(text_labelled *h, const text_tokenizer *tok, const mn_text_dataset *d, int64_t max_len,
                         float mask_prob, long seed) {
    h->n = d->n;
    h->enc = text_encode_all(tok, d->n, d->texts, max_len);
    mn_rng g = train_stream(seed, STREAM_EVAL_MASK, 0);
    mn_tensor *masked = mn_mlm_mask(tok->wp, h->enc.input_ids, mask_prob, &g, &h->labels);
    mn_release(h->enc.input_ids);
    h->enc.input_ids = masked;
}

/* Masked-LM loss (mean over masked tokens) and accuracy on the held-out texts, no dropout. */
static void evaluate(const mn_bert *m, const text_labelled *h, int64_t batch, double *loss, double *acc) {
    double sum = 0;
    int64_t masked = 0, hits = 0;
    bool prev = mn_no_grad_begin();
    for (int64_t at = 0; at < h->n; at += batch) {
        mn_scope sc = mn_scope_begin();
        mn_tensor *index = run_eval_rows(at, batch, h->n);
        mn_encoding e = text_batch_rows(&h->enc, index);
        int64_t T = e.input_ids->shape[1];
        mn_tensor *labels = mnt_contiguous(mnt_slice(mn_gather_rows(h->labels, index), 1, 0, T, 1));
        mn_tensor *hidden = mn_bert_encode(m, e.input_ids, NULL, e.attention_mask, NULL);
        int64_t k;
        hits += bert_mlm_correct(m, hidden, labels, &k);
        if (k > 0) sum += (double)mn_item(mn_bert_mlm_loss(m, hidden, labels)) * (double)k;
        masked += k;
        mn_scope_end(sc);
    }
    mn_no_grad_end(prev);
    *loss = masked ? sum / (double)masked : 0;
    *acc = masked ? (double)hits / (double)masked : 0;
}

typedef struct {
    const char *fortunes, *categories, *exclude, *text, *vocab, *out, *config;
    long vocab_size, hidden, layers, heads, intermediate, max_len, eval_every, eval_max;
    double dropout, mask_prob, eval_fraction;
} options;

static void record_args(train_args *a, const options *o) {
    train_args_add(a, "text", "%s", o->text ? o->text : "");
    train_args_add(a, "fortunes", "%s", o->fortunes);
    train_args_add(a, "categories", "%s", o->categories);
    train_args_add(a, "exclude", "%s", o->exclude);
    train_args_add(a, "vocab_size", "%ld", o->vocab_size);
    train_args_add(a, "config", "%s", o->config);
    train_args_add(a, "sizes", "%ld %ld %ld %ld", o->hidden, o->layers, o->heads, o->intermediate);
    train_args_add(a, "max_len", "%ld", o->max_len);
    train_args_add(a, "dropout", "%g", o->dropout);
    train_args_add(a, "mask_prob", "%g", o->mask_prob);
    train_args_add(a, "eval_fraction", "%g", o->eval_fraction);
    train_args_add(a, "eval_max", "%ld", o->eval_max);
}

/* The training texts and at most eval_max held-out texts (spread over the held-out part). */
static bool load_data(const options *o, long seed, mn_text_dataset *train, mn_text_dataset *held, mn_err *err) {
    mn_text_dataset all, held_all;
    if (o->text ? !mn_lines_load(o->text, &all, err) : !text_load_fortunes(o->fortunes, o->categories, o->exclude, &all, err))
        return false;
    mn_rng split_rng = train_stream(seed, STREAM_SPLIT, 0);
    mn_text_dataset_split(&all, o->eval_fraction, true, &split_rng, train, &held_all);
    if (held_all.n > o->eval_max) {
        mn_tensor *spread = mn_empty_dtype(MN_I32, MN_SHAPE(o->eval_max));
        for (long i = 0; i < o->eval_max; i++) mn_idata(spread)[i] = (int32_t)(i * held_all.n / o->eval_max);
        mn_text_dataset_subset(&held_all, spread, held);
        mn_release(spread);
        mn_text_dataset_free(&held_all);
    } else {
        *held = held_all;
    }
    if (o->text)
        printf("%s: %lld documents (lines) in %s: %lld for training, %lld held out\n", prog, (long long)all.n, o->text,
               (long long)train->n, (long long)held->n);
    else
        printf("%s: %lld fortunes in %d categories (%s): %lld for training, %lld held out\n", prog, (long long)all.n,
               all.n_classes, o->categories, (long long)train->n, (long long)held->n);
    mn_text_dataset_free(&all);
    return true;
}

/* The vocabulary: the resumed run's, --vocab, or built from the training texts into --out. */
static bool make_tokenizer(const options *o, const run_opts *r, const mn_text_dataset *train, text_tokenizer *tok,
                           mn_err *err) {
    if (r->resume_dir) return text_tokenizer_load_dir(r->resume_dir, tok, err);
    if (o->vocab) return text_tokenizer_load_vocab(o->vocab, NULL, tok, err);
    char path[4096];
    snprintf(path, sizeof path, "%s/vocab.txt", o->out);
    mn_vocab_build_opts vb = {.vocab_size = (int32_t)o->vocab_size};
    if (!mn_wordpiece_build_vocab(train->n, (const char *const *)train->texts, NULL, &vb, path, err) ||
        !text_tokenizer_load_vocab(path, NULL, tok, err))
        return false;
    printf("%s: built a %d-token vocabulary from the training texts: %s\n", prog,
           (int)mn_wordpiece_vocab_size(tok->wp), path);
    return true;
}

static mn_bert *make_model(const options *o, const run_opts *r, const text_tokenizer *tok, mn_err *err) {
    mn_bert *m = NULL;
    if (r->resume_dir) {
        mn_load_report rep;
        m = mn_bert_from_pretrained(r->resume_dir, MN_BERT_FOR_MASKED_LM, NULL, &rep, err);
        if (m) bert_print_load_report(&rep, prog);
        mn_load_report_free(&rep);
        if (m && !bert_check_vocab(m, r->resume_dir, tok, err)) mn_bert_free(m), m = NULL;
        return m;
    }
    mn_bert_config cfg;
    if (!bert_make_config(o->config, o->hidden, o->layers, o->heads, o->intermediate, o->max_len, o->dropout, tok,
                          &cfg, err))
        return NULL;
    mn_rng init = train_stream(r->seed, STREAM_INIT, 0);
    m = mn_bert_new(&cfg, MN_BERT_FOR_MASKED_LM, false, &init);
    mn_bert_config_free(&cfg);
    return m;
}

/* s->eval holds the held-out texts; s->train_enc the training texts (no labels: each step masks them
 * afresh), s->eval_enc the held-out texts masked once. */
static int pretrain(const options *o, const run_opts *r, bert_session *s) {
    mn_err err;
    mn_bert_config named; /* before the slow part: is the configuration's name known? */
    if (!mn_bert_config_named(o->config, &named)) {
        fprintf(stderr, "%s: unknown --config \"%s\" (one of %s)\n", prog, o->config, MN_BERT_CONFIG_NAMES);
        return 2;
    }
    mn_bert_config_free(&named);
    if (!mn_make_dirs(o->out, &err)) return run_fail(prog, err.msg, 1);
    if (!load_data(o, r->seed, &s->train, &s->eval, &err)) return run_fail(prog, err.msg, 1);
    const mn_text_dataset *train = &s->train;
    if (train->n < r->batch) {
        fprintf(stderr, "%s: %lld training texts are fewer than one batch of %ld\n", prog, (long long)train->n,
                r->batch);
        return 1;
    }
    text_tokenizer *tok = &s->tok;
    if (!make_tokenizer(o, r, train, tok, &err)) return run_fail(prog, err.msg, 1);
    tok->model_max_length = o->max_len;
    mn_bert *m = s->m = make_model(o, r, tok, &err);
    if (!m) return run_fail(prog, err.msg, 1);
    const mn_bert_config *c = &m->cfg;
    printf("%s: BertForMaskedLM, hidden %lld, %lld layers, %lld heads, intermediate %lld, vocab %lld, max length %ld, "
           "dropout %g: %.2fM parameters\n", prog, (long long)c->hidden_size, (long long)c->num_hidden_layers,
           (long long)c->num_attention_heads, (long long)c->intermediate_size, (long long)c->vocab_size, o->max_len,
           c->hidden_dropout_prob, (double)mn_params_numel(&m->params) / 1e6);

    /* ---- inputs ---- */
    s->train_enc.enc = text_encode_all(tok, train->n, train->texts, o->max_len);
    const mn_encoding *enc = &s->train_enc.enc;
    int64_t tokens = text_count_tokens(enc->attention_mask), truncated = 0;
    for (int64_t i = 0; i < train->n; i++) truncated += mn_idata(enc->attention_mask)[(i + 1) * o->max_len - 1] != 0;
    printf("%s: %.1f tokens per training text on average; %.1f%% of the texts are cut at %ld tokens\n", prog,
           (double)tokens / (double)train->n, 100.0 * (double)truncated / (double)train->n, o->max_len);
    heldout_init(&s->eval_enc, tok, &s->eval, o->max_len, (float)o->mask_prob, r->seed);

    trainer *t = &s->t;
    trainer_init(t, prog, r, train->n, true, (uint64_t)r->seed, "heldout");
    record_args(&t->args, o);
    int status = trainer_start(t, &m->params, o->out);
    if (status) return status;

    /* ---- training ---- */
    double eval_loss = 0, eval_acc = 0, first_eval = NAN, first_loss = NAN, interval_loss = 0;
    int64_t interval_steps = 0, interval_masked = 0, interval_hits = 0, items = 0;
    if (t->eval_loss.n > 0) first_eval = t->eval_loss.y[0]; /* resumed: from the saved curve */
    if (t->start == 0) {
        evaluate(m, &s->eval_enc, r->batch, &eval_loss, &eval_acc);
        first_eval = eval_loss;
        curve_add(&t->eval_loss, 0, eval_loss);
        curve_add(&t->eval_accuracy, 0, eval_acc);
        printf("%s: step 0: held-out MLM loss %.4f, accuracy %.4f\n", prog, eval_loss, eval_acc);
        metrics_write(&t->log, "{\"step\": 0, \"heldout_loss\": %.6f, \"heldout_accuracy\": %.6f}", eval_loss,
                      eval_acc);
    }
    progress pr;
    progress_start_at(&pr, t->start, t->total, "tokens");
    double t0 = progress_now();
    for (int64_t step = t->start + 1; step <= t->stop; step++) {
        mn_scope sc = mn_scope_begin();
        mn_encoding b = text_batch_rows(enc, trainer_next_batch(t));
        mn_rng mask_rng = train_stream(r->seed, STREAM_MASK, step);
        mn_rng drop_rng = train_stream(r->seed, STREAM_DROPOUT, step);
        mn_tensor *labels, *ids = mn_mlm_mask(tok->wp, b.input_ids, (float)o->mask_prob, &mask_rng, &labels);
        mn_tensor *hidden = mn_bert_encode(m, ids, NULL, b.attention_mask, &drop_rng);
        mn_tensor *loss = mn_bert_mlm_loss(m, hidden, labels);
        mn_optim_zero_grad(t->opt);
        mn_backward(loss);
        bool log_step = step % r->log_every == 0 || step == t->stop;
        if (log_step) { /* accuracy costs another pass of the decoder: only on logged steps */
            int64_t k;
            interval_hits += bert_mlm_correct(m, hidden, labels, &k);
            interval_masked += k;
        }
        float loss_v = mn_item(loss);
        if (!trainer_clip_and_check(t, &m->params, loss_v, step)) {
            mn_scope_end(sc);
            return 1;
        }
        trainer_update(t, step);
        items += text_count_tokens(b.attention_mask);
        mn_scope_end(sc);
        if (isnan(first_loss)) first_loss = loss_v;
        interval_loss += loss_v;
        interval_steps++;

        if (log_step) {
            double mean = interval_loss / (double)interval_steps;
            double acc = interval_masked ? (double)interval_hits / (double)interval_masked : 0;
            char extra[64];
            snprintf(extra, sizeof extra, "acc %.3f", acc);
            progress_update_extra(&pr, step, mean, items, extra);
            double el = progress_now() - t0;
            metrics_write(&t->log, "{\"step\": %lld, \"loss\": %.6f, \"accuracy\": %.6f, \"lr\": %.6g, "
                          "\"tokens_per_s\": %.1f, \"elapsed_s\": %.2f}", (long long)step, mean, acc,
                          mn_optim_lr(t->opt), el > 0 ? (double)items / el : 0, el);
            curve_add(&t->train_loss, (double)step, mean);
            curve_add(&t->train_accuracy, (double)step, acc);
            interval_loss = 0, interval_steps = 0, interval_masked = 0, interval_hits = 0;
        }
        if (step % o->eval_every == 0 || step == t->stop) {
            evaluate(m, &s->eval_enc, r->batch, &eval_loss, &eval_acc);
            curve_add(&t->eval_loss, (double)step, eval_loss);
            curve_add(&t->eval_accuracy, (double)step, eval_acc);
            fprintf(stderr, "%s: step %lld: held-out MLM loss %.4f, accuracy %.4f\n", prog, (long long)step,
                    eval_loss, eval_acc);
            metrics_write(&t->log, "{\"step\": %lld, \"heldout_loss\": %.6f, \"heldout_accuracy\": %.6f}",
                          (long long)step, eval_loss, eval_acc);
        }
        if (!bert_session_checkpoint(s, step, eval_loss)) return 1;
    }

    const curve *tc = &t->train_loss, *ec = &t->eval_loss;
    printf("%s: training MLM loss %.4f at step %lld -> %.4f (mean of the last %ld steps)\n", prog, first_loss,
           (long long)t->start + 1, tc->n ? tc->y[tc->n - 1] : NAN, r->log_every);
    printf("%s: held-out MLM loss %.4f at step 0 -> %.4f at step %lld, masked-token accuracy %.4f\n", prog,
           first_eval, eval_loss, (long long)t->stop, eval_acc);
    if (t->saved_step == t->stop) printf("%s: saved the model, tokenizer and trainer state to %s\n", prog, r->save_dir);
    metrics_write(&t->log, "{\"final\": %s, \"step\": %lld, \"heldout_loss\": %.6f, \"heldout_accuracy\": %.6f}",
                  t->stop == t->total ? "true" : "false", (long long)t->stop, eval_loss, eval_acc);
    char path[4096];
    snprintf(path, sizeof path, "%s/loss.svg", o->out);
    svg_series series[2] = {{"training (mean per log interval)", tc->x, tc->y, tc->n, false},
                            {"held-out", ec->x, ec->y, ec->n, true}};
    char title[512];
    snprintf(title, sizeof title, "BERT masked-LM pre-training on %s", o->text ? o->text : "fortunes");
    if (svg_plot(path, title, "step", "MLM loss", false, series, 2) == 0)
        printf("%s: wrote %s\n", prog, path);
    else return fprintf(stderr, "%s: cannot write %s: %s\n", prog, path, strerror(errno)), 1;
    return 0;
}

int main(int argc, char **argv) {
    options o = {.fortunes = MN_FORTUNES_DIR, .categories = "all", .exclude = "ascii-art", .out = "bert_pretrain_out",
                 .config = "bert-tiny",
                 .vocab_size = 6000, .max_len = 64, .eval_every = 250, .eval_max = 1000, .dropout = 0.1,
                 .mask_prob = 0.15, .eval_fraction = 0.05};
    run_opts r = {.optimizer = "adamw", .lr = 1e-3, .weight_decay = -1, .schedule = "linear", .warmup = 40,
                  .clip = 1.0, .steps = 1500, .batch = 32, .seed = 1, .log_every = 25};
    cli_opt opts[48] = {
        {"--text", CLI_STRING, &o.text, "pre-train on this UTF-8 text file instead, one document per line"},
        {"--fortunes", CLI_STRING, &o.fortunes, "directory of fortune files"},
        {"--categories", CLI_STRING, &o.categories, "comma-separated fortune categories, or all"},
        {"--exclude", CLI_STRING, &o.exclude, "categories left out of all (pictures, not text)"},
        {"--vocab", CLI_STRING, &o.vocab, "use this vocab.txt instead of building one from the corpus"},
        {"--vocab-size", CLI_INT, &o.vocab_size, "size of the vocabulary built from the corpus", 100, 1e7},
        {"--out", CLI_STRING, &o.out, "output directory: vocab.txt, metrics.jsonl (unless --log), loss.svg"},
        {"--config", CLI_STRING, &o.config, "model configuration: " MN_BERT_CONFIG_NAMES},
        {"--hidden", CLI_INT, &o.hidden, "hidden size (0: the configuration's)", 0, 1e5},
        {"--layers", CLI_INT, &o.layers, "layers (0: the configuration's)", 0, 1000},
        {"--heads", CLI_INT, &o.heads, "attention heads (0: the configuration's)", 0, 1000},
        {"--intermediate", CLI_INT, &o.intermediate, "feed-forward size (0: the configuration's)", 0, 1e6},
        {"--max-len", CLI_INT, &o.max_len, "tokens per text incl. [CLS]/[SEP] (= max_position_embeddings)", 3, 8192},
        {"--dropout", CLI_FLOAT, &o.dropout, "hidden and attention dropout", 0, 0.99},
        {"--mask-prob", CLI_FLOAT, &o.mask_prob, "share of tokens masked per text", 0.01, 1},
        {"--eval-fraction", CLI_FLOAT, &o.eval_fraction, "share of the texts held out", 0.001, 0.9},
        {"--eval-max", CLI_INT, &o.eval_max, "at most this many held-out texts are evaluated", 1, 1e9},
        {"--eval-every", CLI_INT, &o.eval_every, "steps between held-out evaluations", 1, 1e9},
    };
    cli_spec spec = {prog, "[options]", about, opts, cli_count(opts, 48)};
    int rc = run_parse_command_line(&spec, 48, &r, argc, argv);
    if (rc >= 0) return rc;
    bert_session s = {0};
    int status = pretrain(&o, &r, &s);
    if (!bert_session_free(&s) && status == 0) status = 1;
    return cli_exit(prog, status);
}
