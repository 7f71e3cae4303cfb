/* UTF-8 decoding and the Unicode character classes of BERT's tokenizer
 * (coverage documented in data/unicode.h). */
#include "data/data.h"
#include "data/unicode.h"

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

bool mn__uni_is_whitespace(uint32_t cp) {
    if (cp == ' ' || cp == '\t' || cp == '\n' || cp == '\r') return true;
    /* Zs */
    return cp == 0xA0 || cp == 0x1680 || (cp >= 0x2000 && cp <= 0x200A) || cp == 0x202F || cp == 0x205F ||
           cp == 0x3000;
}

bool mn__uni_is_split_space(uint32_t cp) {
    /* Zl and Zp survive BERT's cleaning but Python's str.split() breaks on them */
    return cp == 0x2028 || cp == 0x2029;
}

static const cp_range format_chars[] = { /* Cf */
    {0x00AD, 0x00AD}, {0x0600, 0x0605}, {0x061C, 0x061C}, {0x06DD, 0x06DD}, {0x070F, 0x070F},
    {0x0890, 0x0891}, {0x08E2, 0x08E2}, {0x180E, 0x180E}, {0x200B, 0x200F}, {0x202A, 0x202E},
    {0x2060, 0x2064}, {0x2066, 0x206F}, {0xFEFF, 0xFEFF}, {0xFFF9, 0xFFFB}, {0x110BD, 0x110BD},
    {0x110CD, 0x110CD}, {0x13430, 0x13438}, {0x1BCA0, 0x1BCA3}, {0x1D173, 0x1D17A}, {0xE0001, 0xE0001},
    {0xE0020, 0xE007F},
};

bool mn__uni_is_control(uint32_t cp) {
    if (cp == '\t' || cp == '\n' || cp == '\r') return false;
    if (cp < 0x20 || (cp >= 0x7F && cp <= 0x9F)) return true; /* Cc */
    return IN_RANGES(cp, format_chars);
}

static const cp_range punct_chars[] = { /* P* outside ASCII */
    {0x00A1, 0x00A1}, {0x00A7, 0x00A7}, {0x00AB, 0x00AB}, {0x00B6, 0x00B7}, {0x00BB, 0x00BB},
    {0x00BF, 0x00BF}, {0x037E, 0x037E}, {0x0387, 0x0387}, {0x055A, 0x055F}, {0x0589, 0x058A},
    {0x05BE, 0x05BE}, {0x05C0, 0x05C0}, {0x05C3, 0x05C3}, {0x05C6, 0x05C6}, {0x05F3, 0x05F4},
    {0x0609, 0x060A}, {0x060C, 0x060D}, {0x061B, 0x061B}, {0x061D, 0x061F}, {0x066A, 0x066D},
    {0x06D4, 0x06D4}, {0x0964, 0x0965}, {0x0970, 0x0970}, {0x0E4F, 0x0E4F}, {0x0E5A, 0x0E5B},
    {0x2010, 0x2027}, {0x2030, 0x2043}, {0x2045, 0x2051}, {0x2053, 0x205E}, {0x207D, 0x207E},
    {0x208D, 0x208E}, {0x2308, 0x230B}, {0x2329, 0x232A}, {0x2768, 0x2775}, {0x27C5, 0x27C6},
    {0x27E6, 0x27EF}, {0x2983, 0x2998}, {0x29D8, 0x29DB}, {0x29FC, 0x29FD}, {0x2E00, 0x2E2E},
    {0x2E30, 0x2E4F}, {0x2E52, 0x2E5D}, {0x3001, 0x3003}, {0x3008, 0x3011}, {0x3014, 0x301F},
    {0x3030, 0x3030}, {0x303D, 0x303D}, {0x30A0, 0x30A0}, {0x30FB, 0x30FB}, {0xFE10, 0xFE19},
    {0xFE30, 0xFE52}, {0xFE54, 0xFE61}, {0xFE63, 0xFE63}, {0xFE68, 0xFE68}, {0xFE6A, 0xFE6B},
    {0xFF01, 0xFF03}, {0xFF05, 0xFF0A}, {0xFF0C, 0xFF0F}, {0xFF1A, 0xFF1B}, {0xFF1F, 0xFF20},
    {0xFF3B, 0xFF3D}, {0xFF3F, 0xFF3F}, {0xFF5B, 0xFF5B}, {0xFF5D, 0xFF5D}, {0xFF5F, 0xFF65},
};

bool mn__uni_is_punct(uint32_t cp) {
    /* BERT treats every non-alphanumeric printable ASCII character as punctuation */
    if ((cp >= 33 && cp <= 47) || (cp >= 58 && cp <= 64) || (cp >= 91 && cp <= 96) || (cp >= 123 && cp <= 126))
        return true;
    return cp > 0x7F && IN_RANGES(cp, punct_chars);
}

static const cp_range cjk_chars[] = {
    {0x3400, 0x4DBF}, {0x4E00, 0x9FFF}, {0xF900, 0xFAFF}, {0x20000, 0x2A6DF},
    {0x2A700, 0x2B73F}, {0x2B740, 0x2B81F}, {0x2B820, 0x2CEAF}, {0x2F800, 0x2FA1F},
};

bool mn__uni_is_cjk(uint32_t cp) { return IN_RANGES(cp, cjk_chars); }

static const cp_range mark_chars[] = { /* Mn */
    {0x0300, 0x036F}, {0x0483, 0x0487}, {0x0591, 0x05BD}, {0x05BF, 0x05BF}, {0x05C1, 0x05C2},
    {0x05C4, 0x05C5}, {0x05C7, 0x05C7}, {0x0610, 0x061A}, {0x064B, 0x065F}, {0x0670, 0x0670},
    {0x06D6, 0x06DC}, {0x06DF, 0x06E4}, {0x06E7, 0x06E8}, {0x06EA, 0x06ED}, {0x1AB0, 0x1ABD},
    {0x1ABF, 0x1ACE}, {0x1DC0, 0x1DFF}, {0x20D0, 0x20DC}, {0x20E1, 0x20E1}, {0x20E5, 0x20F0},
    {0x3099, 0x309A}, {0xFE00, 0xFE0F}, {0xFE20, 0xFE2F},
};

bool mn__uni_is_mark(uint32_t cp) { return IN_RANGES(cp, mark_chars); }

/* ---- case and decomposition ------------------------------------------------------ */

int mn__uni_lower(uint32_t cp, uint32_t out[2]) {
    uint32_t r = cp;
    if (cp < 0x80) {
        if (cp >= 'A' && cp <= 'Z') r = cp + 32;
    } else if (cp >= 0xC0 && cp <= 0xDE) {
        if (cp != 0xD7) r = cp + 32;
    } else if (cp >= 0x100 && cp <= 0x17F) {
        if (cp == 0x130) { /* capital I with dot: "i" followed by a combining dot above */
            out[0] = 'i';
            out[1] = 0x307;
            return 2;
        }
        if (cp == 0x178) r = 0xFF;
        else if ((cp >= 0x139 && cp <= 0x148) || (cp >= 0x179 && cp <= 0x17E)) r = (cp & 1) ? cp + 1 : cp;
        else if (cp != 0x131 && cp != 0x138 && cp != 0x149 && cp != 0x17F) r = (cp & 1) ? cp : cp + 1;
    } else if (cp >= 0x386 && cp <= 0x3AB) { /* Greek */
        if (cp >= 0x391 && cp != 0x3A2) r = cp + 32;
        else if (cp == 0x386) r = 0x3AC;
        else if (cp >= 0x388 && cp <= 0x38A) r = cp + 37;
        else if (cp == 0x38C) r = 0x3CC;
        else if (cp == 0x38E || cp == 0x38F) r = cp + 63;
    } else if (cp >= 0x400 && cp <= 0x42F) { /* Cyrillic */
        r = cp < 0x410 ? cp + 80 : cp + 32;
    } else if (cp >= 0xFF21 && cp <= 0xFF3A) { /* fullwidth Latin */
        r = cp + 32;
    }
    out[0] = r;
    return 1;
}

/* Canonical decompositions of U+00C0-U+017F as (base letter, mark code) pairs;
 * ".." where the character has none. Mark codes: g grave, a acute, c circumflex,
 * t tilde, m macron, b breve, d dot above, u diaeresis, r ring, h double acute,
 * v caron, e cedilla, o ogonek. */
static const char decomposition[] =
    /* U+00C0 */ "AgAaAcAtAuAr..CeEgEaEcEuIgIaIcIu..NtOgOaOcOtOu....UgUaUcUuYa...."
    /* U+00E0 */ "agaaacatauar..ceegeaeceuigiaiciu..ntogoaocotou....uguaucuuya..yu"
    /* U+0100 */ "AmamAbabAoaoCacaCcccCdcdCvcvDvdv....EmemEbebEdedEoeoEvevGcgcGbgb"
    /* U+0120 */ "GdgdGegeHchc....ItitImimIbibIoioId......JcjcKeke..LalaLeleLvlv.."
    /* U+0140 */ "......NanaNeneNvnv......OmomObobOhoh....RaraRereRvrvSasaScscSese"
    /* U+0160 */ "SvsvTeteTvtv....UtutUmumUbubUrurUhuhUouoWcwcYcycYuZazaZdzdZvzv..";

static uint32_t mark_code(char c) {
    switch (c) {
    case 'g': return 0x300;
    case 'a': return 0x301;
    case 'c': return 0x302;
    case 't': return 0x303;
    case 'm': return 0x304;
    case 'b': return 0x306;
    case 'd': return 0x307;
    case 'u': return 0x308;
    case 'r': return 0x30A;
    case 'h': return 0x30B;
    case 'v': return 0x30C;
    case 'e': return 0x327;
    case 'o': return 0x328;
    default: return 0;
    }
}

_Static_assert(sizeof decomposition - 1 == 2 * (0x180 - 0xC0), "one pair per code point U+00C0-U+017F");

uint32_t mn__uni_decompose(uint32_t cp, uint32_t *mark) {
    *mark = 0;
    if (cp < 0xC0 || cp > 0x17F) return cp;
    const char *d = decomposition + 2 * (cp - 0xC0);
    if (d[0] == '.') return cp;
    *mark = mark_code(d[1]);
    return (uint32_t)(unsigned char)d[0];
}

uint32_t mn__uni_compose(uint32_t base, uint32_t mark) {
    if (base >= 0x80 || mark < 0x300 || mark > 0x328) return 0;
    for (uint32_t cp = 0xC0; cp <= 0x17F; cp++) {
        const char *d = decomposition + 2 * (cp - 0xC0);
        if ((unsigned char)d[0] == base && mark_code(d[1]) == mark) return cp;
    }
    return 0;
}
