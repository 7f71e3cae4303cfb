/* Internal: the pieces of UTF-8 and Unicode that BERT's tokenizer needs.
 *
 * Character classes follow Hugging Face's BasicTokenizer (_is_whitespace, _is_control,
 * _is_punctuation, _is_chinese_char) over utf8proc's Unicode tables; lower-casing and the
 * normalisation forms are those of Python's str.lower and unicodedata.normalize, which that
 * tokenizer calls. */
#ifndef MN_DATA_UNICODE_H
#define MN_DATA_UNICODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define MN_UNI_REPLACEMENT 0xFFFDu

/* Decodes the sequence at s (n > 0 bytes available) into *cp and returns its
 * length. Invalid, overlong, surrogate or truncated sequences decode as one
 * byte of U+FFFD, so every byte string tokenises without reading past n. */
int mn__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp);
/* Writes cp as 1-4 bytes and returns the count. */
int mn__utf8_encode(uint32_t cp, char *out);
/* Number of code points in valid-or-not UTF-8 (U+FFFD counting one per bad byte). */
size_t mn__utf8_count(const char *s, size_t n);

bool mn__uni_is_whitespace(uint32_t cp); /* space, \t, \n, \r, or Zs */
bool mn__uni_is_control(uint32_t cp);    /* any C* category (Cn too), except \t \n \r */
bool mn__uni_is_punct(uint32_t cp);
bool mn__uni_is_cjk(uint32_t cp);        /* BERT's "Chinese character" ranges */
bool mn__uni_is_mark(uint32_t cp);       /* non-spacing mark (Mn) */
/* Separators that Python's str.split() honours besides Zs and the ASCII ones. */
bool mn__uni_is_split_space(uint32_t cp);
/* Python's str.lower of a word: out (room for 2 n) gets the lower case of each code point,
 * U+0130 as two, capital sigma as final sigma at the end of a word. Returns the count. */
size_t mn__uni_lower(const uint32_t *word, size_t n, uint32_t *out);
/* NFD of cps[0 .. n) (compose: NFC) into a new buffer (free it) of *out_n code points. */
uint32_t *mn__uni_normalize(const uint32_t *cps, size_t n, bool compose, size_t *out_n);

#endif
