/* bert_predict: run a Hugging Face BERT directory on texts.
 *
 * A BertForSequenceClassification prints each text's label with its probability; a
 * BertForMaskedLM prints the five most likely tokens (with probabilities) for every
 * [MASK] of each text. --logits adds the raw logits, one line "logits: v1 v2 ..." per
 * text (classifier) or per [MASK] (masked LM: the vocabulary logits), printed with 9
 * significant digits so they round-trip float32. Texts come from the command line, or
 * one per line from standard input when the only text is "-". */
#include "common/bert_util.h"
#include "common/cli.h"
#include "common/text.h"
#include "data/data.h"
#include "mnemo.h"

#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *prog = "bert_predict";

static void print_logits(const float *v, int64_t n) {
    printf("logits:");
    for (int64_t i = 0; i < n; i++) printf(" %.9g", v[i]);
    printf("\n");
}

/* Softmax of n logits into p (double for the probabilities printed). */
static void softmax(const float *v, int64_t n, double *p) {
    double mx = v[0], sum = 0;
    for (int64_t i = 1; i < n; i++) mx = v[i] > mx ? v[i] : mx;
    for (int64_t i = 0; i < n; i++) sum += p[i] = exp((double)v[i] - mx);
    for (int64_t i = 0; i < n; i++) p[i] /= sum;
}

static void classify(const mn_bert *m, const float *logits, bool show_logits) {
    int64_t C = m->cfg.labels.num_labels, best = 0;
    double *p = calloc((size_t)C + 1, sizeof(double));
    softmax(logits, C, p);
    for (int64_t c = 1; c < C; c++)
        if (p[c] > p[best]) best = c;
    char buf[32];
    printf("  label: %s (probability %.4f)\n", mn_labels_name(&m->cfg.labels, best, buf), p[best]);
    if (show_logits) print_logits(logits, C);
    free(p);
}

static void fill_masks(const mn_bert *m, const text_tokenizer *tok, const int32_t *ids, int64_t T,
                       const float *logits, bool show_logits, int top) {
    int64_t V = m->cfg.vocab_size, n_masks = 0;
    int32_t mask_id = mn_wordpiece_id(tok->wp, "[MASK]");
    double *p = malloc(sizeof(double) * (size_t)V);
    for (int64_t t = 0; t < T; t++) {
        if (ids[t] != mask_id) continue;
        n_masks++;
        const float *row = logits + t * V;
        softmax(row, V, p);
        printf("  [MASK] at position %lld:", (long long)t);
        /* top-k by repeated selection: k is small */
        int32_t chosen[16];
        for (int k = 0; k < top && k < V; k++) {
            int64_t best = -1;
            for (int64_t v = 0; v < V; v++) {
                bool taken = false;
                for (int j = 0; j < k; j++) taken |= chosen[j] == v;
                if (!taken && (best < 0 || p[v] > p[best])) best = v;
            }
            chosen[k] = (int32_t)best;
            printf("  %s (%.4f)", mn_wordpiece_token(tok->wp, (int32_t)best), p[best]);
        }
        printf("\n");
        if (show_logits) print_logits(row, V);
    }
    if (n_masks == 0) printf("  no [MASK] token in this text: nothing to fill\n");
    free(p);
}

/* Runs the model on one text and prints its prediction. */
static void predict(const mn_bert *m, const text_tokenizer *tok, const char *text, int64_t max_len, bool show_logits,
                    int index) {
    mn_scope sc = mn_scope_begin();
    int32_t *ids = malloc(sizeof(int32_t) * (size_t)max_len * 3);
    int32_t *types = ids + max_len, *mask = ids + 2 * max_len;
    int64_t n_tok = 0;
    free(mn_wordpiece_tokenize(tok->wp, text, &n_tok));
    int64_t T = mn_wordpiece_encode(tok->wp, text, NULL, max_len, ids, types, mask);
    printf("text %d: %s\n", index, text);
    if (n_tok + 2 > max_len)
        fprintf(stderr, "%s: text %d has %lld tokens; cut to the model's %lld positions\n", prog, index,
                (long long)n_tok + 2, (long long)max_len);
    mn_tensor *input_ids = mn_from_ints(MN_SHAPE(1, T), ids);
    mn_tensor *token_types = mn_from_ints(MN_SHAPE(1, T), types);
    mn_tensor *logits = mnt_contiguous(mn_bert_forward(m, input_ids, token_types, NULL, NULL));
    if (m->arch == MN_BERT_FOR_SEQUENCE_CLASSIFICATION) classify(m, mn_data(logits), show_logits);
    else fill_masks(m, tok, ids, T, mn_data(logits), show_logits, 5);
    free(ids);
    mn_scope_end(sc);
}

/* A text that is not UTF-8 would tokenise as [UNK]s: an error naming where it came from, the
 * others still run. */
static bool checked_text(const char *text, size_t len, const char *source, int index) {
    size_t bad;
    const char *nul = memchr(text, 0, len);
    if (!nul && mn_utf8_valid(text, len, &bad)) return true;
    fprintf(stderr, "%s: %s %d: %s at byte %zu; skipped\n", prog, source, index,
            nul ? "NUL character" : "invalid UTF-8", (nul ? (size_t)(nul - text) : bad) + 1);
    return false;
}

int main(int argc, char **argv) {
    const char *model_dir = NULL;
    bool show_logits = false, allow_nonfinite = false;
    long threads = 0, max_len = 0;
    cli_opt opts[] = {
        {"--model", CLI_STRING, &model_dir, "Hugging Face BERT directory: config.json, model.safetensors, vocab.txt "
                                            "(tokenizer_config.json optional)"},
        {"--logits", CLI_FLAG, &show_logits, "also print the raw logits (\"logits: v1 v2 ...\")"},
        {"--max-len", CLI_INT, &max_len, "cut texts to this many tokens (0: the model's maximum)", 0, 1 << 20},
        {"--threads", CLI_INT, &threads, "OpenMP threads (0: all cores)", 0, 1024},
        {"--allow-nonfinite", CLI_FLAG, &allow_nonfinite, "load a checkpoint holding NaN or infinite weights (warned) instead of refusing it"},
    };
    cli_spec spec = {prog, "--model DIR [--logits] TEXT... (or - to read one text per line from stdin)",
                     "Classifies texts with a BertForSequenceClassification directory (label and probability),\n"
                     "or fills every [MASK] with a BertForMaskedLM directory (top 5 tokens and probabilities).",
                     opts, (int)(sizeof opts / sizeof opts[0])};
    const char **texts = malloc(sizeof(char *) * (size_t)argc);
    int n_texts = 0;
    int rc = cli_parse(&spec, argc, argv, texts, argc, &n_texts);
    if (rc) return free(texts), rc == 1 ? 0 : 2;
    if (!model_dir || n_texts == 0) {
        fprintf(stderr, "%s: give --model DIR and at least one text (see --help)\n", prog);
        free(texts);
        return 2;
    }
    cli_threads(prog, threads);
    setvbuf(stdout, NULL, _IOLBF, 0);

    mn_err err;
    mn_bert_config cfg;
    if (!mn_bert_config_read(model_dir, &cfg, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        free(texts);
        return 1;
    }
    mn_bert_arch arch;
    bool known = mn_bert_arch_parse(cfg.architecture, &arch);
    mn_bert_config_free(&cfg);
    if (!known || arch == MN_BERT_MODEL) {
        fprintf(stderr, "%s: %s/config.json: architecture \"%s\" has no head to predict with (expected "
                "BertForSequenceClassification or BertForMaskedLM)\n", prog, model_dir,
                cfg.architecture[0] ? cfg.architecture : "(none)");
        free(texts);
        return 1;
    }
    text_tokenizer tok;
    if (!text_tokenizer_load_dir(model_dir, &tok, &err)) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        free(texts);
        return 1;
    }
    mn_load_report rep;
    mn_pretrained_opts po = {.allow_nonfinite = allow_nonfinite};
    mn_bert *m = mn_bert_from_pretrained(model_dir, arch, &po, &rep, &err);
    if (m && (rep.n_missing || rep.n_mismatched || rep.n_notes)) bert_print_load_report(&rep, prog);
    if (m && (rep.n_missing || rep.n_mismatched)) {
        /* predictions from freshly initialised weights would mean nothing */
        mn_err_set(&err, "%s: the checkpoint lacks weights of %s (listed above)", model_dir, mn_bert_arch_name(arch));
        mn_bert_free(m);
        m = NULL;
    }
    mn_load_report_free(&rep);
    if (m && !bert_check_vocab(m, model_dir, &tok, &err)) mn_bert_free(m), m = NULL;
    if (!m) {
        fprintf(stderr, "%s: %s\n", prog, err.msg);
        text_tokenizer_free(&tok);
        free(texts);
        return 1;
    }
    int64_t limit = bert_max_len(m, &tok);
    if (max_len > 0 && max_len < limit) limit = max_len;
    if (limit < 2) {
        fprintf(stderr, "%s: %s allows only %lld positions\n", prog, model_dir, (long long)limit);
        return 1;
    }

    bool prev = mn_no_grad_begin();
    int index = 0, status = 0;
    if (n_texts == 1 && !strcmp(texts[0], "-")) {
        char *line = NULL;
        size_t cap = 0;
        ssize_t len;
        while ((len = getline(&line, &cap, stdin)) >= 0) {
            while (len > 0 && (line[len - 1] == '\n' || line[len - 1] == '\r')) line[--len] = 0;
            if (checked_text(line, (size_t)len, "stdin line", index + 1)) predict(m, &tok, line, limit, show_logits, index + 1);
            else status = 1;
            index++;
        }
        free(line);
    } else {
        for (int i = 0; i < n_texts; i++, index++) {
            if (checked_text(texts[i], strlen(texts[i]), "text", index + 1))
                predict(m, &tok, texts[i], limit, show_logits, index + 1);
            else status = 1;
        }
    }
    mn_no_grad_end(prev);
    mn_bert_free(m);
    text_tokenizer_free(&tok);
    free(texts);
    return cli_exit(prog, status);
}
