/* UTF-8 decoding and the Unicode properties of BERT's tokenizer: categories, case mapping and
 * normalisation come from utf8proc's tables (the whole of Unicode), the rest follows Hugging
 * Face's BasicTokenizer and Python's str methods, which it is built on. */
#include "data/data.h"
#include "data/data_internal.h"
#include "data/unicode.h"

#include <stdlib.h>
#include <utf8proc.h>

typedef struct {
    uint32_t lo, hi;
} cp_range;

static bool in_ranges(uint32_t cp, const cp_range *r, int n) {
    int lo = 0, hi = n - 1;
    while (lo <= hi) {
        int mid = (lo + hi) / 2;
        if (cp < r[mid].lo) hi = mid - 1;
        else if (cp > r[mid].hi) lo = mid + 1;
        else return true;
    }
    return false;
}
#define IN_RANGES(cp, table) in_ranges(cp, table, (int)(sizeof table / sizeof table[0]))

/* ---- UTF-8 ---------------------------------------------------------------------- */

int mn__utf8_decode(const unsigned char *s, size_t n, uint32_t *cp) {
    unsigned c = s[0];
    if (c < 0x80) {
        *cp = c;
        return 1;
    }
    int len;
    uint32_t v, min;
    if (c >= 0xC2 && c <= 0xDF) len = 2, v = c & 0x1F, min = 0x80;
    else if (c >= 0xE0 && c <= 0xEF) len = 3, v = c & 0x0F, min = 0x800;
    else if (c >= 0xF0 && c <= 0xF4) len = 4, v = c & 0x07, min = 0x10000;
    else {
        *cp = MN_UNI_REPLACEMENT;
        return 1;
    }
    if ((size_t)len > n) {
        *cp = MN_UNI_REPLACEMENT;
        return 1;
    }
    for (int i = 1; i < len; i++) {
        if ((s[i] & 0xC0) != 0x80) {
            *cp = MN_UNI_REPLACEMENT;
            return 1;
        }
        v = (v << 6) | (s[i] & 0x3F);
    }
    if (v < min || v > 0x10FFFF || (v >= 0xD800 && v <= 0xDFFF)) {
        *cp = MN_UNI_REPLACEMENT;
        return 1;
    }
    *cp = v;
    return len;
}

int mn__utf8_encode(uint32_t cp, char *out) {
    unsigned char *o = (unsigned char *)out;
    if (cp < 0x80) {
        o[0] = (unsigned char)cp;
        return 1;
    }
    if (cp < 0x800) {
        o[0] = (unsigned char)(0xC0 | (cp >> 6));
        o[1] = (unsigned char)(0x80 | (cp & 0x3F));
        return 2;
    }
    if (cp < 0x10000) {
        o[0] = (unsigned char)(0xE0 | (cp >> 12));
        o[1] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
        o[2] = (unsigned char)(0x80 | (cp & 0x3F));
        return 3;
    }
    o[0] = (unsigned char)(0xF0 | (cp >> 18));
    o[1] = (unsigned char)(0x80 | ((cp >> 12) & 0x3F));
    o[2] = (unsigned char)(0x80 | ((cp >> 6) & 0x3F));
    o[3] = (unsigned char)(0x80 | (cp & 0x3F));
    return 4;
}

bool mn_utf8_valid(const char *s, size_t n, size_t *bad) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0;
    while (i < n) {
        uint32_t cp;
        int len = mn__utf8_decode(u + i, n - i, &cp);
        /* a genuine U+FFFD in the text is 3 bytes long; the error marker is 1 */
        if (cp == MN_UNI_REPLACEMENT && len == 1) {
            if (bad) *bad = i;
            return false;
        }
        i += (size_t)len;
    }
    return true;
}

size_t mn__utf8_count(const char *s, size_t n) {
    const unsigned char *u = (const unsigned char *)s;
    size_t i = 0, count = 0;
    while (i < n) {
        uint32_t cp;
        i += (size_t)mn__utf8_decode(u + i, n - i, &cp);
        count++;
    }
    return count;
}

/* ---- character classes ----------------------------------------------------------- */

static utf8proc_category_t category(uint32_t cp) { return utf8proc_category((utf8proc_int32_t)cp); }

bool mn__uni_is_whitespace(uint32_t cp) {
    return cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r' || category(cp) == UTF8PROC_CATEGORY_ZS;
}

bool mn__uni_is_split_space(uint32_t cp) {
    /* Zl and Zp survive BERT's cleaning but Python's str.split() breaks on them (its other
     * separators are Zs or control characters, which the cleaning has already handled) */
    return cp == 0x2028 || cp == 0x2029;
}

bool mn__uni_is_control(uint32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r') return false;
    switch (category(cp)) { /* every C* category, unassigned code points (Cn) included */
    case UTF8PROC_CATEGORY_CN:
    case UTF8PROC_CATEGORY_CC:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_CS:
    case UTF8PROC_CATEGORY_CO: return true;
    default: return false;
    }
}

bool mn__uni_is_punct(uint32_t cp) {
    /* BERT treats every non-alphanumeric printable ASCII character as punctuation */
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
        return true;
    switch (category(cp)) {
    case UTF8PROC_CATEGORY_PC:
    case UTF8PROC_CATEGORY_PD:
    case UTF8PROC_CATEGORY_PS:
    case UTF8PROC_CATEGORY_PE:
    case UTF8PROC_CATEGORY_PI:
    case UTF8PROC_CATEGORY_PF:
    case UTF8PROC_CATEGORY_PO: return true;
    default: return false;
    }
}

/* BERT's "Chinese character" blocks: the CJK Unified Ideographs and their extensions and
 * compatibility forms (not Hangul, kana or CJK punctuation) */
static const cp_range cjk_chars[] = {
    {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}, {0xF900, 0xFAFF}, {0x20000, 0x2A6DF},
    {0x2A700, 0x2B73F}, {0x2B740, 0x2B81F}, {0x2B820, 0x2CEAF}, {0x2F800, 0x2FA1F},
};

bool mn__uni_is_cjk(uint32_t cp) { return IN_RANGES(cp, cjk_chars); }

bool mn__uni_is_mark(uint32_t cp) { return category(cp) == UTF8PROC_CATEGORY_MN; }

/* ---- case ------------------------------------------------------------------------- */

/* Python's "cased" (Lowercase, Uppercase or Lt): letters of those categories, and the other
 * characters with a case mapping (Roman numerals, circled letters) */
static bool is_cased(uint32_t cp) {
    utf8proc_category_t c = category(cp);
    if (c == UTF8PROC_CATEGORY_LU || c == UTF8PROC_CATEGORY_LL || c == UTF8PROC_CATEGORY_LT) return true;
    utf8proc_int32_t u = (utf8proc_int32_t)cp;
    return utf8proc_tolower(u) != u || utf8proc_toupper(u) != u;
}

/* Unicode's Case_Ignorable: marks, format characters, modifier letters and symbols, and the
 * Word_Break MidLetter / MidNumLet / Single_Quote characters */
static bool is_case_ignorable(uint32_t cp) {
    switch (category(cp)) {
    case UTF8PROC_CATEGORY_MN:
    case UTF8PROC_CATEGORY_ME:
    case UTF8PROC_CATEGORY_CF:
    case UTF8PROC_CATEGORY_LM:
    case UTF8PROC_CATEGORY_SK: return true;
    default: break;
    }
    static const uint32_t mid[] = {0x27,   0x2E,   0x3A,   0xB7,   0x387,  0x55F,  0x5F4,  0x2018, 0x2019,
                                   0x2024, 0x2027, 0xFE13, 0xFE52, 0xFE55, 0xFF07, 0xFF0E, 0xFF1A};
    for (size_t i = 0; i < sizeof mid / sizeof mid[0]; i++)
        if (cp == mid[i]) return true;
    return false;
}

/* Capital sigma at word[i] becomes final sigma after a cased letter (case-ignorable characters
 * skipped) that no cased letter follows: Python's Final_Sigma rule */
static bool final_sigma(const uint32_t *word, size_t n, size_t i) {
    size_t j = i;
    while (j > 0 && is_case_ignorable(word[j - 1])) j--;
    if (j == 0 || !is_cased(word[j - 1])) return false;
    for (j = i + 1; j < n && is_case_ignorable(word[j]); j++) {
    }
    return j == n || !is_cased(word[j]);
}

size_t mn__uni_lower(const uint32_t *word, size_t n, uint32_t *out) {
    size_t m = 0;
    for (size_t i = 0; i < n; i++) {
        uint32_t cp = word[i];
        if (cp == 0x130) { /* capital I with dot: "i" and a combining dot above (SpecialCasing) */
            out[m++] = 'i';
            out[m++] = 0x307;
        } else if (cp == 0x3A3) {
            out[m++] = final_sigma(word, n, i) ? 0x3C2 : 0x3C3;
        } else {
            out[m++] = (uint32_t)utf8proc_tolower((utf8proc_int32_t)cp);
        }
    }
    return m;
}

/* ---- normalisation ------------------------------------------------------------------ */

uint32_t *mn__uni_normalize(const uint32_t *cps, size_t n, bool compose, size_t *out_n) {
    size_t cap = n + 16, len = 0;
    utf8proc_int32_t *buf = mn__xmalloc(sizeof *buf * cap, "normalisation buffer");
    for (size_t i = 0; i < n; i++) {
        for (;;) { /* the full canonical decomposition of one code point (at most a few) */
            int boundclass = 0;
            utf8proc_ssize_t r = utf8proc_decompose_char((utf8proc_int32_t)cps[i], buf + len,
                                                         (utf8proc_ssize_t)(cap - len), UTF8PROC_DECOMPOSE,
                                                         &boundclass);
            if (r < 0) { /* (not a code point: cannot come from the decoder) */
                buf[len] = (utf8proc_int32_t)cps[i];
                r = 1;
            }
            if ((size_t)r <= cap - len) {
                len += (size_t)r;
                break;
            }
            cap = 2 * cap + (size_t)r;
            utf8proc_int32_t *grown = realloc(buf, sizeof *buf * cap);
            if (!grown) mn_fatal("out of memory for the normalisation buffer");
            buf = grown;
        }
    }
    /* canonical ordering: within each run of combining marks, a stable sort by combining class */
    for (size_t i = 1; i < len; i++) {
        utf8proc_int32_t c = buf[i];
        int cc = utf8proc_get_property(c)->combining_class;
        if (!cc) continue;
        size_t j = i;
        while (j > 0) {
            int prev = utf8proc_get_property(buf[j - 1])->combining_class;
            if (!prev || prev <= cc) break;
            buf[j] = buf[j - 1];
            j--;
        }
        buf[j] = c;
    }
    if (compose && len) {
        utf8proc_ssize_t r = utf8proc_normalize_utf32(buf, (utf8proc_ssize_t)len, UTF8PROC_COMPOSE);
        if (r >= 0) len = (size_t)r;
    }
    *out_n = len;
    return (uint32_t *)buf;
}
