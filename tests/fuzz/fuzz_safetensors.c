/* libFuzzer target for the safetensors reader: any byte string either opens and
 * reads back cleanly, or fails with a message; it must never crash, leak or read
 * out of bounds. Build and run: see tests/fuzz/README.md. */
#include "tensor/tensor.h"

#include <stdint.h>
#include <string.h>

/* Programming errors (mn_fatal) are bugs here too: the default handler aborts, which
 * libFuzzer reports as a crash with the message on stderr. */
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    mn_err err;
    err.msg[0] = '\0';
    mn_st_file *f = mn_st_open_memory(data, size, "fuzz-input", &err);
    if (!f) {
        if (err.msg[0] == '\0') __builtin_trap(); /* every failure must say why */
        return 0;
    }
    mn_scope sc = mn_scope_begin();
    for (int i = 0; i < mn_st_count(f); i++) {
        const char *name = mn_st_name(f, i), *dtype;
        int ndim;
        int64_t shape[MN_MAX_DIMS];
        if (!mn_st_info(f, name, &dtype, &ndim, shape)) __builtin_trap(); /* every listed name is found */
        mn_tensor *t = mn_st_read(f, name, &err);
        if (t) {
            int64_t n = 1;
            for (int d = 0; d < ndim; d++) n *= shape[d];
            if (t->ndim != ndim || mn_numel(t) != n) __builtin_trap();
            volatile float sink = 0; /* touch every element so ASan sees any bad size */
            if (t->dtype == MN_F32)
                for (int64_t k = 0; k < n; k++) sink += mn_data(t)[k];
            else
                for (int64_t k = 0; k < n; k++) sink += (float)mn_idata(t)[k];
            (void)sink;
        }
        mn_scope_end(sc);
        sc = mn_scope_begin();
    }
    mn_scope_end(sc);
    (void)mn_st_meta(f, "format");
    mn_st_close(f);
    return 0;
}
