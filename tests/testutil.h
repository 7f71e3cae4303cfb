/* Helpers shared by the cmocka tests. */
#ifndef MN_TESTUTIL_H
#define MN_TESTUTIL_H

#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <cmocka.h>

#include "mnemo.h"

/* Runs STMT expecting it to raise an mnemo error whose message contains SUBSTR. */
#define EXPECT_MN_ERROR(STMT, SUBSTR)                                                     \
    do {                                                                                  \
        mn_scope expect_sc_ = mn_scope_begin();                                           \
        if (tu_trap_begin()) {                                                            \
            STMT;                                                                         \
            tu_trap_end();                                                                \
            fail_msg("expected an error containing \"%s\" from: %s", SUBSTR, #STMT);      \
        }                                                                                 \
        tu_trap_end();                                                                    \
        tu_scope_unwind(expect_sc_);                                                      \
        if (!strstr(mn_last_error(), SUBSTR))                                             \
            fail_msg("error \"%s\" does not mention \"%s\"", mn_last_error(), SUBSTR);    \
    } while (0)

/* tu_trap_begin() returns 1 on the first pass and 0 when an error longjmps back. */
extern jmp_buf tu_trap_jmp;
#define tu_trap_begin() (tu_trap_arm(), setjmp(tu_trap_jmp) == 0)
void tu_trap_arm(void);
void tu_trap_end(void);
/* After a trapped error, scopes opened by the failed call are still open: close them. */
void tu_scope_unwind(mn_scope sc);

/* Random tensor of shape with values in [lo, hi) from a fixed seed. */
mn_tensor *tu_rand(uint64_t seed, int ndim, const int64_t *shape, float lo, float hi);
/* Max |a - b| / (atol + rtol |b|) over elements; <= 1 means close. Shapes must match. */
double tu_close_ratio(const mn_tensor *a, const mn_tensor *b, double atol, double rtol);
void tu_assert_close(const mn_tensor *a, const mn_tensor *b, double atol, double rtol);

/* Command-line tests run the programs next to them: the build configuration directory (build/CFG)
 * of the running test, whose binary is build/CFG/tests/NAME. False if /proc/self/exe is unreadable. */
bool tu_build_dir(char *out, size_t size);
/* rm -rf dir: 0 when it is gone (a cmocka setup/teardown result), -1 otherwise. */
int tu_remove_tree(const char *dir);

#endif
