/* Internal: the pieces of UTF-8 and Unicode that BERT's tokenizer needs.
 *
 * Character classes follow Hugging Face's BasicTokenizer (_is_whitespace,
 * _is_control, _is_punctuation, _is_chinese_char). Coverage of the tables:
 * - whitespace (Zs), control (Cc, Cf) and CJK ranges: complete (Unicode 14);
 * - punctuation: ASCII 33-47, 58-64, 91-96, 123-126 as BERT defines them, plus
 *   the P* characters of Latin-1, Greek, Armenian, Hebrew, Arabic, Devanagari,
 *   Thai, General Punctuation, Supplemental Punctuation, CJK Symbols, CJK
 *   compatibility/small forms and the fullwidth forms;
 * - lower-casing (Python's str.lower applied one character at a time, as
 *   Hugging Face does): ASCII, Latin-1, Latin Extended-A, basic Greek and
 *   Cyrillic, fullwidth Latin;
 * - canonical decomposition / composition (NFD for accent stripping, NFC of
 *   base + one mark): Latin-1 Supplement and Latin Extended-A;
 * - non-spacing marks (Mn) dropped by accent stripping: combining diacritics
 *   U+0300-036F, Cyrillic, Hebrew and Arabic marks, the extended/supplement
 *   diacritic blocks, combining marks for symbols, variation selectors, half
 *   marks and the kana voicing marks.
 * Characters outside these tables are left as they are. */
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
bool mn__uni_is_control(uint32_t cp);    /* Cc or Cf, except \t \n \r */
bool mn__uni_is_punct(uint32_t cp);
bool mn__uni_is_cjk(uint32_t cp);        /* BERT's "Chinese character" ranges */
bool mn__uni_is_mark(uint32_t cp);       /* non-spacing mark (Mn) */
/* Separators that Python's str.split() honours besides Zs and the ASCII ones. */
bool mn__uni_is_split_space(uint32_t cp);
/* Lower case of cp: writes 1 or 2 code points into out and returns the count. */
int mn__uni_lower(uint32_t cp, uint32_t out[2]);
/* Canonical decomposition: returns the base and sets *mark, or returns cp with *mark = 0. */
uint32_t mn__uni_decompose(uint32_t cp, uint32_t *mark);
/* Precomposed character for base + mark, or 0 if there is none. */
uint32_t mn__uni_compose(uint32_t base, uint32_t mark);

#endif
