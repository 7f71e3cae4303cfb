/* The pretrained learned optimizers, embedded in the library so that "--optimizer mnemosyne-t" works
 * wherever the library goes (an installed program has no source tree to find files in). The
 * checkpoints live in lopt/pretrained/ and are meta-trained by bench/train_learned_optimizers.sh;
 * the assembler's .incbin copies them into read-only data at build time (paths are relative to the
 * repository root, where the build runs; configure.py makes this file depend on them). */
#include "lopt/learned_internal.h"

#include <stdio.h>

#define MN_INCBIN(sym, file)                                                                                       \
    __asm__(".pushsection .rodata\n.balign 16\n.hidden " #sym "\n.globl " #sym "\n" #sym ":\n.incbin \"" file \
            "\"\n.hidden " #sym "_end\n.globl " #sym "_end\n" #sym "_end:\n.popsection\n");                    \
    extern const unsigned char sym[], sym##_end[]

MN_INCBIN(mn__pretrained_lstm, "lopt/pretrained/lstm.safetensors");
MN_INCBIN(mn__pretrained_mnemosyne_c, "lopt/pretrained/mnemosyne-c.safetensors");
MN_INCBIN(mn__pretrained_mnemosyne_t, "lopt/pretrained/mnemosyne-t.safetensors");

mn_lopt *mn_lopt_pretrained(mn_lopt_kind kind, mn_err *err) {
    const unsigned char *start, *end;
    switch (kind) {
    case MN_LOPT_LSTM: start = mn__pretrained_lstm, end = mn__pretrained_lstm_end; break;
    case MN_LOPT_MNEMOSYNE_C: start = mn__pretrained_mnemosyne_c, end = mn__pretrained_mnemosyne_c_end; break;
    case MN_LOPT_MNEMOSYNE_T: start = mn__pretrained_mnemosyne_t, end = mn__pretrained_mnemosyne_t_end; break;
    default: mn_err_set(err, "mn_lopt_pretrained: unknown kind %d", (int)kind); return NULL;
    }
    char name[64];
    snprintf(name, sizeof name, "(built-in %s)", mn_lopt_kind_name(kind));
    mn_lopt *o = mn_lopt_load_memory(start, (size_t)(end - start), name, err);
    if (o && o->cfg.kind != kind) {
        mn_err_set(err, "%s: holds a %s optimizer", name, mn_lopt_kind_name(o->cfg.kind));
        mn_lopt_free(o);
        return NULL;
    }
    return o;
}
