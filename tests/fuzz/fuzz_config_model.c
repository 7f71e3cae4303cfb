/* libFuzzer target for loading a model directory: config.json and model.safetensors together, as
 * vit_predict, bert_predict and the fine-tuning programs read them. Input layout: byte 0 picks the
 * family (ViT, BERT or MLP), bytes 1-2 give the length L of config.json (little endian), the next L
 * bytes are config.json and the rest is model.safetensors. Each input is written to a directory
 * (tmpfs when available) and loaded with from_pretrained: the load either succeeds, with a model
 * that runs a forward pass to finite-shaped logits, or fails with a message. The config's sizes
 * must never be trusted before the checkpoint's shapes (an allocation of a bad size aborts, which
 * libFuzzer reports). Build and run: tests/fuzz/run_fuzz.sh. */
#include "models/models.h"

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static char dir[64];

static void write_part(const char *name, const uint8_t *data, size_t size) {
    char path[128];
    snprintf(path, sizeof path, "%s/%s", dir, name);
    FILE *f = fopen(path, "wb");
    if (!f) __builtin_trap();
    if (size && fwrite(data, 1, size, f) != size) __builtin_trap();
    if (fclose(f) != 0) __builtin_trap();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    if (!dir[0]) {
        snprintf(dir, sizeof dir, "%s/fuzz_config_model_XXXXXX", access("/dev/shm", W_OK) == 0 ? "/dev/shm" : "/tmp");
        if (!mkdtemp(dir)) __builtin_trap();
    }
    if (size < 3) return 0;
    int family = data[0] % 3;
    size_t len = (size_t)data[1] | (size_t)data[2] << 8;
    if (len > size - 3) len = size - 3;
    write_part("config.json", data + 3, len);
    write_part("model.safetensors", data + 3 + len, size - 3 - len);

    mn_err err;
    err.msg[0] = '\0';
    mn_load_report rep;
    mn_scope sc = mn_scope_begin();
    bool prev = mn_no_grad_begin();
    bool loaded = false;
    if (family == 0) {
        mn_vit *m = mn_vit_from_pretrained(dir, MN_VIT_FOR_IMAGE_CLASSIFICATION, NULL, &rep, &err);
        if (m) {
            loaded = true;
            int64_t S = m->cfg.image_size, C = m->cfg.num_channels;
            if (S * S * C <= (1 << 16)) {
                mn_tensor *x = mn_zeros(MN_SHAPE(1, C, S, S));
                mn_tensor *y = mn_vit_forward(m, x, NULL);
                if (y->ndim != 2 || y->shape[0] != 1 || y->shape[1] != m->cfg.labels.num_labels) __builtin_trap();
            }
            mn_vit_free(m);
        }
    } else if (family == 1) {
        mn_bert *m = mn_bert_from_pretrained(dir, MN_BERT_FOR_SEQUENCE_CLASSIFICATION, NULL, &rep, &err);
        if (m) {
            loaded = true;
            int64_t T = m->cfg.max_position_embeddings < 4 ? m->cfg.max_position_embeddings : 4;
            if (T > 0 && m->cfg.vocab_size > 0) {
                mn_tensor *ids = mn_empty_dtype(MN_I32, MN_SHAPE(1, T));
                for (int64_t t = 0; t < T; t++) mn_idata(ids)[t] = (int32_t)(t % m->cfg.vocab_size);
                mn_tensor *y = mn_bert_forward(m, ids, NULL, NULL, NULL);
                if (y->ndim != 2 || y->shape[0] != 1 || y->shape[1] != m->cfg.labels.num_labels) __builtin_trap();
            }
            mn_bert_free(m);
        }
    } else {
        mn_mlp_model *m = mn_mlp_model_from_pretrained(dir, 1, &rep, &err);
        if (m) {
            loaded = true;
            mn_mlp_model_free(m);
        }
    }
    if (loaded) mn_load_report_free(&rep);
    else if (err.msg[0] == '\0') __builtin_trap(); /* every failure must say why */
    mn_no_grad_end(prev);
    mn_scope_end(sc);
    return 0;
}
