/* Internal helpers shared by the data module's files. */
#ifndef MN_DATA_INTERNAL_H
#define MN_DATA_INTERNAL_H

#include "data/data.h"

/* malloc that stops the program when memory runs out (like tensor allocation). */
void *mn__xmalloc(size_t size, const char *what);
void *mn__xrealloc(void *p, size_t size, const char *what);
char *mn__strdup(const char *s);
char *mn__strndup(const char *s, size_t n);
/* n copies (NULL names become "0", "1", ...); freed by mn__strs_free. */
char **mn__strs_dup(int n, const char *const *names);
void mn__strs_free(char **s, int64_t n);
/* Sorting helpers. */
void mn__sort_i32(int32_t *v, int64_t n);
void mn__sort_strs(char **v, int64_t n); /* byte order */
/* Checks an I32 [M] index tensor against [0, n); stops naming op otherwise. Returns a contiguous copy's data owner. */
mn_tensor *mn__checked_index(mn_tensor *index, int64_t n, const char *op);

/* Checks before stb_image decodes (image_guard.c): false if a JPEG's Huffman
 * tables would overflow stb_image 2.27's tables; a malloc'd copy of a PNG
 * without the empty IDAT chunks before its data, or NULL when it has none. */
bool mn__jpeg_tables_ok(const unsigned char *data, size_t size);
bool mn__png_crcs_ok(const unsigned char *data, size_t size, const char *name, mn_err *err);
unsigned char *mn__png_drop_empty_idat(const unsigned char *data, size_t size, size_t *out_size);

#endif
