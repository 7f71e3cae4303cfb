/* bert_finetune: text classification with BertForSequenceClassification.
 *
 * Data: fortune categories (the category is the label) or a text<TAB>label file, split
 * into training and test texts (stratified, seeded) unless a test file is given. Model:
 * a Hugging Face BERT directory (BertForMaskedLM, BertModel or a classifier), loaded into
 * a classifier with a fresh head (and pooler, when the checkpoint has none), with the
 * directory's vocabulary and tokenizer settings; or --from-scratch: the same architecture
 * and vocabulary, randomly initialised, for comparison. Reports test accuracy against the
 * majority-class baseline and saves a Hugging Face directory whose id2label holds the
 * class names. */
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

static const char *prog = "bert_finetune";
/* --help: what the program does */
static const char *about =
    "Fine-tunes BERT to classify texts: fortunes by category (default six categories, 20% kept for\n"
    "testing) or a text<TAB>label file. From --model DIR (e.g. bert_pretrain's --save directory) the\n"
    "encoder is loaded and the pooler/classifier are new; --from-scratch trains the same\n"
    "architecture and vocabulary from a random start, for comparison. Defaults: 6 epochs of 32\n"
    "texts, AdamW lr 5e-4 with linear decay. Prints the test accuracy next to the majority-class\n"
    "baseline; --save DIR writes a Hugging Face directory with id2label from the class names (for\n"
    "bert_predict) plus the trainer state for --resume.";

/* the random streams of a run (train_stream) */
enum { STREAM_INIT = 1, STREAM_DROPOUT, STREAM_SPLIT };

typedef struct {
    const char *model, *vocab, *config, *fortunes, *categories, *tsv, *test_tsv, *out, *keep;
    bool from_scratch;
    bool allow_nonfinite;
    long max_len, eval_every;
    double test_fraction, dropout, val_fraction;
} options;

/* A split ready for the model: encoded texts and their labels I32 [N]. */
static void encode(text_labelled *e, const text_tokenizer *tok, const mn_text_dataset *d, int64_t max_len) {
    e->n = d->n;
    e->enc = text_encode_all(tok, d->n, d->texts, max_len);
    e->labels = mn_from_ints(MN_SHAPE(d->n), d->labels);
}

/* Test loss and accuracy (no dropout); per-class hits and counts when given. */
static void evaluate(const mn_bert *m, const text_labelled *e, int64_t batch, double *loss, double *acc,
                     int64_t *hits_c, int64_t *count_c) {
    double sum = 0;
    int64_t hits = 0;
    if (count_c) memset(count_c, 0, sizeof(int64_t) * (size_t)m->cfg.labels.num_labels);
    if (hits_c) memset(hits_c, 0, sizeof(int64_t) * (size_t)m->cfg.labels.num_labels);
    bool prev = mn_no_grad_begin();
    for (int64_t at = 0; at < e->n; at += batch) {
        mn_scope sc = mn_scope_begin();
        mn_tensor *index = run_eval_rows(at, batch, e->n);
        int64_t b = index->shape[0];
        mn_encoding x = text_batch_rows(&e->enc, index);
        mn_tensor *y = mn_gather_rows(e->labels, index);
        mn_tensor *logits = mn_bert_forward(m, x.input_ids, NULL, x.attention_mask, NULL);
        sum += (double)mn_item(mn_cross_entropy(logits, y, -100, 0)) * (double)b;
        const int32_t *pred = mn_idata(mn_argmax(logits, -1, false)), *truth = mn_idata(y);
        for (int64_t i = 0; i < b; i++) {
            hits += pred[i] == truth[i];
            if (count_c) count_c[truth[i]]++, hits_c[truth[i]] += pred[i] == truth[i];
        }
        mn_scope_end(sc);
    }
    mn_no_grad_end(prev);
    *loss = e->n ? sum / (double)e->n : 0;
    *acc = e->n ? (double)hits / (double)e->n : 0;
}

/* Train and test texts, and with --val-fraction a validation share of the training texts (stratified,
 * from its own random stream; else val stays empty). */
static bool load_data(const options *o, long seed, mn_text_dataset *train, mn_text_dataset *test,
                      mn_text_dataset *val, mn_err *err) {
    mn_text_dataset all, pool;
    if (o->tsv) {
        if (!mn_tsv_load(o->tsv, MN_LABELS_SORTED, 0, NULL, o->test_tsv ? &pool : &all, err)) return false;
        if (o->test_tsv && !mn_tsv_load(o->test_tsv, MN_LABELS_SORTED, pool.n_classes,
                                        (const char *const *)pool.class_names, test, err)) {
            mn_text_dataset_free(&pool);
            return false;
        }
    } else if (!text_load_fortunes(o->fortunes, o->categories, "ascii-art", &all, err)) {
        return false;
    }
    if (!o->test_tsv) {
        mn_rng g = train_stream(seed, STREAM_SPLIT, 0);
        mn_text_dataset_split(&all, o->test_fraction, true, &g, &pool, test);
        mn_text_dataset_free(&all);
    }
    if (o->val_fraction <= 0) {
        *train = pool;
        return true;
    }
    mn_rng g = train_stream(seed, STREAM_SPLIT, 1);
    mn_text_dataset_split(&pool, o->val_fraction, true, &g, train, val);
    mn_text_dataset_free(&pool);
    if (train->n == 0 || val->n == 0)
        return mn_err_set(err, "--val-fraction %g leaves %lld training and %lld validation texts", o->val_fraction,
                          (long long)train->n, (long long)val->n);
    return true;
}

/* The classifier: resumed, fine-tuned from --model, or from scratch (config and vocabulary of --model,
 * or --config and --vocab). */
static mn_bert *make_model(const options *o, const run_opts *r, const mn_text_dataset *d, text_tokenizer *tok,
                           mn_err *err) {
    const char *dir = r->resume_dir ? r->resume_dir : o->model;
    if (dir ? !text_tokenizer_load_dir(dir, tok, err) : !text_tokenizer_load_vocab(o->vocab, NULL, tok, err))
        return NULL;
    mn_bert *m = NULL;
    mn_bert_config cfg;
    if (r->resume_dir || !o->from_scratch) {
        mn_pretrained_opts po = {.num_labels = d->n_classes, .id2label = (const char *const *)d->class_names,
                                 .seed = train_stream(r->seed, STREAM_INIT, 0).seed,
                                 .allow_nonfinite = o->allow_nonfinite};
        mn_load_report rep;
        m = mn_bert_from_pretrained(dir, MN_BERT_FOR_SEQUENCE_CLASSIFICATION, &po, &rep, err);
        if (m) bert_print_load_report(&rep, prog);
        mn_load_report_free(&rep);
    } else {
        bool ok = dir ? mn_bert_config_read(dir, &cfg, err)
                      : bert_make_config(o->config, 0, 0, 0, 0, o->max_len > 0 ? o->max_len : 128, -1, tok, &cfg, err);
        if (!ok) return NULL;
        mn_labels_set(&cfg.labels, d->n_classes, (const char *const *)d->class_names);
        mn_rng init = train_stream(r->seed, STREAM_INIT, 0);
        m = mn_bert_new(&cfg, MN_BERT_FOR_SEQUENCE_CLASSIFICATION, true, &init);
        mn_bert_config_free(&cfg);
        printf("%s: from scratch: random initialisation (seed %ld)%s%s\n", prog, r->seed,
               dir ? " with the config of " : "", dir ? dir : "");
    }
    if (m && !bert_check_vocab(m, dir ? dir : o->vocab, tok, err)) mn_bert_free(m), m = NULL;
    if (m && o->dropout >= 0) {
        m->cfg.hidden_dropout_prob = m->cfg.attention_probs_dropout_prob = o->dropout;
        for (int64_t i = 0; i < m->cfg.num_hidden_layers; i++)
            m->layers[i].dropout = m->layers[i].attn_dropout = (float)o->dropout;
    }
    return m;
}

static void record_args(train_args *a, const options *o) {
    train_args_add(a, "data", "%s", o->tsv ? o->tsv : o->categories);
    train_args_add(a, "test", "%s %g", o->test_tsv ? o->test_tsv : "split", o->test_fraction);
    train_args_add(a, "init", "%s %s", o->from_scratch ? "scratch" : "pretrained", o->model ? o->model : o->vocab);
    train_args_add(a, "max_len", "%ld", o->max_len);
    train_args_add(a, "dropout", "%g", o->dropout);
    train_args_add(a, "validation", "%g keep %s", o->val_fraction, o->keep);
}

/* s->eval holds the test texts. */
static int finetune(const options *o, const run_opts *r, bert_session *s) {
    mn_err err;
    if (!mn_make_dirs(o->out, &err)) return run_fail(prog, err.msg, 1);

    /* ---- data ---- */
    if (!load_data(o, r->seed, &s->train, &s->eval, &s->val, &err)) return run_fail(prog, err.msg, 1);
    const mn_text_dataset *train = &s->train, *test = &s->eval;
    bool has_val = s->val.n > 0;
    const char *ename = has_val ? "val" : "test"; /* what the evaluations during training use */
    int C = train->n_classes;
    if (C < 2 || test->n == 0) {
        fprintf(stderr, "%s: need at least 2 classes and a non-empty test set (found %d classes, %lld test texts)\n",
                prog, C, (long long)test->n);
        return 1;
    }
    if (has_val)
        printf("%s: %d classes, %lld training, %lld validation and %lld test texts\n", prog, C, (long long)train->n,
               (long long)s->val.n, (long long)test->n);
    else
        printf("%s: %d classes, %lld training and %lld test texts\n", prog, C, (long long)train->n,
               (long long)test->n);
    for (int c = 0; c < C; c++) {
        int64_t count = 0;
        for (int64_t i = 0; i < train->n; i++) count += train->labels[i] == c;
        printf("  %-20s %6lld training texts\n", train->class_names[c], (long long)count);
    }
    int majority;
    double baseline = text_majority_baseline(train, test, &majority);
    printf("%s: majority-class baseline (always \"%s\"): test accuracy %.4f\n", prog, train->class_names[majority],
           baseline);

    /* ---- model ---- */
    mn_bert *m = s->m = make_model(o, r, train, &s->tok, &err);
    if (!m) return run_fail(prog, err.msg, 1);
    text_tokenizer *tok = &s->tok;
    int64_t max_len = bert_max_len(m, tok);
    if (o->max_len > 0 && o->max_len < max_len) max_len = o->max_len;
    if (tok->model_max_length <= 0 || tok->model_max_length > m->cfg.max_position_embeddings)
        tok->model_max_length = m->cfg.max_position_embeddings;
    const mn_bert_config *c = &m->cfg;
    printf("%s: BertForSequenceClassification, hidden %lld, %lld layers, vocab %lld, max length %lld, dropout %g: "
           "%.2fM parameters\n", prog, (long long)c->hidden_size, (long long)c->num_hidden_layers,
           (long long)c->vocab_size, (long long)max_len, c->hidden_dropout_prob,
           (double)mn_params_numel(&m->params) / 1e6);
    encode(&s->train_enc, tok, train, max_len);
    encode(&s->eval_enc, tok, test, max_len);
    if (has_val) encode(&s->val_enc, tok, &s->val, max_len);
    const text_labelled *tr = &s->train_enc, *te = &s->eval_enc, *ev = has_val ? &s->val_enc : &s->eval_enc;

    trainer *t = &s->t;
    trainer_init(t, prog, r, train->n, false, (uint64_t)r->seed, ename);
    record_args(&t->args, o);
    int status = trainer_start(t, &m->params, o->out);
    if (status) return status;
    if (!strcmp(o->keep, "best")) {
        bert_session_keep_best(s, r->resume_dir ? t->resumed_best : -1);
        if (r->resume_dir && !best_load(&s->best, r->resume_dir, &err)) {
            fprintf(stderr, "%s: cannot resume: %s\n", prog, err.msg);
            return 1;
        }
    }
    int64_t eval_every = o->eval_every > 0 ? o->eval_every : t->per_epoch;

    /* ---- training ---- */
    double test_loss = 0, test_acc = 0, eval_loss = 0, eval_acc = 0, interval_loss = 0, interval_acc = 0;
    int64_t interval_steps = 0, items = 0, evaluated_at = -1;
    int64_t *hits_c = calloc((size_t)C, sizeof(int64_t)), *count_c = calloc((size_t)C, sizeof(int64_t));
    progress pr;
    progress_start_at(&pr, t->start, t->total, "texts");
    for (int64_t step = t->start + 1; step <= t->stop; step++) {
        mn_scope sc = mn_scope_begin();
        mn_tensor *idx = trainer_next_batch(t);
        mn_encoding x = text_batch_rows(&tr->enc, idx);
        mn_tensor *y = mn_gather_rows(tr->labels, idx);
        mn_rng drop = train_stream(r->seed, STREAM_DROPOUT, step);
        mn_tensor *logits = mn_bert_forward(m, x.input_ids, NULL, x.attention_mask, &drop);
        mn_tensor *loss = mn_cross_entropy(logits, y, -100, 0);
        mn_optim_zero_grad(t->opt);
        mn_backward(loss);
        float loss_v = mn_item(loss);
        if (!trainer_clip_and_check(t, &m->params, loss_v, step)) {
            mn_scope_end(sc);
            status = 1;
            break;
        }
        interval_acc += mn_accuracy(logits, y, -100);
        trainer_update(t, step);
        items += idx->shape[0];
        mn_scope_end(sc);
        interval_loss += loss_v;
        interval_steps++;
        if (step % r->log_every == 0 || step == t->stop) {
            double mean = interval_loss / (double)interval_steps, acc = interval_acc / (double)interval_steps;
            char extra[64];
            snprintf(extra, sizeof extra, "train acc %.3f", acc);
            progress_update_extra(&pr, step, mean, items, extra);
            metrics_write(&t->log, "{\"step\": %lld, \"loss\": %.6f, \"train_accuracy\": %.6f, \"lr\": %.6g}",
                          (long long)step, mean, acc, mn_optim_lr(t->opt));
            curve_add(&t->train_loss, (double)step, mean);
            curve_add(&t->train_accuracy, (double)step, acc);
            interval_loss = interval_acc = 0, interval_steps = 0;
        }
        if (step % eval_every == 0 || step == t->stop) {
            evaluate(m, ev, r->batch, &eval_loss, &eval_acc, hits_c, count_c);
            evaluated_at = step;
            curve_add(&t->eval_accuracy, (double)step, eval_acc);
            curve_add(&t->eval_loss, (double)step, eval_loss);
            fprintf(stderr, "%s: step %lld (epoch %.2f): %s loss %.4f, %s accuracy %.4f (baseline %.4f)\n", prog,
                    (long long)step, (double)step / (double)t->per_epoch, ename, eval_loss, ename, eval_acc, baseline);
            metrics_write(&t->log, "{\"step\": %lld, \"%s_loss\": %.6f, \"%s_accuracy\": %.6f}", (long long)step,
                          ename, eval_loss, ename, eval_acc);
            if (s->keep_best) best_offer(&s->best, eval_acc);
        }
        if (s->keep_best && step == t->total && best_have(&s->best)) { /* the run's end: the best is the result */
            best_restore(&s->best);
            printf("%s: keeping the weights of the best validation accuracy, %.4f (--keep best)\n", prog,
                   s->best.metric);
        }
        if (!bert_session_checkpoint(s, step, eval_acc)) {
            status = 1;
            break;
        }
    }

    if (status == 0) {
        if (evaluated_at != t->stop || has_val || s->keep_best)
            evaluate(m, te, r->batch, &test_loss, &test_acc, hits_c, count_c);
        else
            test_loss = eval_loss, test_acc = eval_acc;
        printf("%s: per-class test accuracy:\n", prog);
        for (int k = 0; k < C; k++)
            printf("  %-20s %.4f (%lld texts)\n", train->class_names[k],
                   count_c[k] ? (double)hits_c[k] / (double)count_c[k] : 0, (long long)count_c[k]);
        printf("%s: test accuracy %.4f vs majority-class baseline %.4f (%s, %s)\n", prog, test_acc, baseline,
               r->resume_dir ? "resumed" : o->from_scratch ? "from scratch" : "fine-tuned",
               o->model ? o->model : o->vocab);
        metrics_write(&t->log, "{\"final\": %s, \"step\": %lld, \"test_loss\": %.6f, \"test_accuracy\": %.6f, "
                      "\"baseline\": %.6f}", t->stop == t->total ? "true" : "false", (long long)t->stop, test_loss,
                      test_acc, baseline);
        if (t->saved_step == t->stop) printf("%s: saved the classifier, tokenizer and trainer state to %s\n", prog, r->save_dir);
        char path[4096];
        double bx[2] = {0, (double)t->stop}, by[2] = {baseline, baseline};
        const curve *acc = &t->eval_accuracy, *train_loss = &t->train_loss, *test_loss_c = &t->eval_loss;
        char acc_name[32], loss_name[32];
        snprintf(acc_name, sizeof acc_name, "%s accuracy", ename);
        snprintf(loss_name, sizeof loss_name, "%s loss", ename);
        svg_series a[2] = {{acc_name, acc->x, acc->y, acc->n, false},
                           {"majority-class baseline", bx, by, 2, false}};
        snprintf(path, sizeof path, "%s/accuracy.svg", o->out);
        if (svg_plot(path, has_val ? "BERT fine-tuning: validation accuracy" : "BERT fine-tuning: test accuracy", "step", "accuracy", false, a, 2) != 0) {
            fprintf(stderr, "%s: cannot write %s: %s\n", prog, path, strerror(errno));
            status = 1;
        }
        svg_series l[2] = {{"training loss (mean per log interval)", train_loss->x, train_loss->y, train_loss->n,
                            false},
                           {loss_name, test_loss_c->x, test_loss_c->y, test_loss_c->n, true}};
        snprintf(path, sizeof path, "%s/loss.svg", o->out);
        if (svg_plot(path, "BERT fine-tuning: loss", "step", "cross-entropy", false, l, 2) != 0) {
            fprintf(stderr, "%s: cannot write %s: %s\n", prog, path, strerror(errno));
            status = 1;
        } else if (!status) printf("%s: wrote %s/loss.svg and %s/accuracy.svg\n", prog, o->out, o->out);
    }

    free(hits_c);
    free(count_c);
    return status;
}

int main(int argc, char **argv) {
    options o = {.fortunes = MN_FORTUNES_DIR, .config = "bert-tiny",
                 .categories = "computers,food,love,politics,science,sports", .out = "bert_finetune_out",
                 .test_fraction = 0.2, .dropout = -1, .keep = "last"};
    run_opts r = {.optimizer = "adamw", .lr = 5e-4, .weight_decay = -1, .schedule = "linear", .warmup = 30,
                  .clip = 1.0, .epochs = 6, .batch = 32, .seed = 1, .log_every = 10};
    cli_opt opts[48] = {
        {"--model", CLI_STRING, &o.model, "Hugging Face BERT directory (config.json, model.safetensors, vocab.txt)"},
        {"--from-scratch", CLI_FLAG, &o.from_scratch, "random initialisation (config and vocabulary of --model)"},
        {"--allow-nonfinite", CLI_FLAG, &o.allow_nonfinite, "load a checkpoint holding NaN or infinite weights (warned) instead of refusing it"},
        {"--vocab", CLI_STRING, &o.vocab, "vocab.txt for --from-scratch without --model"},
        {"--config", CLI_STRING, &o.config, "configuration for --from-scratch without --model: " MN_BERT_CONFIG_NAMES},
        {"--fortunes", CLI_STRING, &o.fortunes, "directory of fortune files"},
        {"--categories", CLI_STRING, &o.categories, "comma-separated fortune categories (the classes), or all"},
        {"--tsv", CLI_STRING, &o.tsv, "train on text<TAB>label lines of this file instead of fortunes"},
        {"--test-tsv", CLI_STRING, &o.test_tsv, "test on this text<TAB>label file instead of a split"},
        {"--test-fraction", CLI_FLOAT, &o.test_fraction, "share of the texts kept for testing", 0.01, 0.9},
        {"--val-fraction", CLI_FLOAT, &o.val_fraction, "share of the training texts held out for validation: the "
                                                       "evaluations during training use them, the test set is used "
                                                       "once at the end (0: none)", 0, 0.9},
        {"--keep", CLI_STRING, &o.keep, "the model the run ends with and saves: last, or best (the best validation "
                                        "accuracy; needs --val-fraction)"},
        {"--max-len", CLI_INT, &o.max_len, "tokens per text incl. [CLS]/[SEP] (0: the model's maximum)", 0, 8192},
        {"--dropout", CLI_FLOAT, &o.dropout, "hidden and attention dropout (-1: the model's config)", -1, 0.99},
        {"--out", CLI_STRING, &o.out, "output directory: metrics.jsonl (unless --log), loss.svg, accuracy.svg"},
        {"--eval-every", CLI_INT, &o.eval_every, "steps between evaluations (on the validation set with "
                                                 "--val-fraction, else the test set; 0: every epoch)", 0, 1e9},
    };
    cli_spec spec = {prog, "--model DIR | --from-scratch [options]", about, opts, cli_count(opts, 48)};
    int rc = run_parse_command_line(&spec, 48, &r, argc, argv);
    if (rc >= 0) return rc;
    if (!o.model && !r.resume_dir && !(o.from_scratch && o.vocab)) {
        fprintf(stderr, "%s: give --model DIR (a BERT to fine-tune), or --from-scratch with --model DIR or --vocab "
                "FILE (see --help)\n", prog);
        return 2;
    }
    if (!best_keep_option_ok(prog, o.keep, o.val_fraction)) return 2;
    if (o.test_tsv && !o.tsv) {
        fprintf(stderr, "%s: --test-tsv needs --tsv\n", prog);
        return 2;
    }
    bert_session s = {0};
    int status = finetune(&o, &r, &s);
    if (!bert_session_free(&s) && status == 0) status = 1;
    return cli_exit(prog, status);
}
