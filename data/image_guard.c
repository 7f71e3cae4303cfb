/* Checks of encoded images before stb_image (Debian 12 ships version 2.27) sees them.
 *
 * JPEG: stb_image 2.27 (Debian 12's libstb-dev) trusts the code counts of a DHT
 * segment: counts summing to more than 256 write past its 257-entry size table
 * and 256-entry value table (fixed upstream in 2.28 with a "bad size list"
 * check). mnemo reads untrusted image folders, so every DHT segment stb_image
 * could reach is checked first: the marker segments are walked by their
 * lengths, entropy-coded data after a start-of-scan is skipped up to the next
 * marker (0xFF followed by neither 0x00 nor a restart code), and each table's
 * counts must sum to at most 256. */
#include "data/data_internal.h"

#include <stdio.h>
#include <string.h>
#include <zlib.h>

static unsigned byte_at(const unsigned char *d, size_t n, size_t i) { return i < n ? d[i] : 0; }

/* The DHT segment whose length field starts at d[at]: every table's count sum <= 256. */
static bool dht_ok(const unsigned char *d, size_t n, size_t at) {
    long left = (long)(byte_at(d, n, at) << 8 | byte_at(d, n, at + 1)) - 2;
    size_t pos = at + 2;
    while (left > 0 && pos < n) {
        unsigned sum = 0;
        for (int i = 0; i < 16; i++) sum += byte_at(d, n, pos + 1 + (size_t)i);
        if (sum > 256) return false;
        pos += 17 + sum;
        left -= 17 + (long)sum;
    }
    return true;
}

bool mn__jpeg_tables_ok(const unsigned char *d, size_t n) {
    /* stb_image takes any run of 0xFF fill bytes before a marker, the start-of-image one included */
    size_t pos = 0;
    while (pos < n && d[pos] == 0xFF) pos++;
    if (pos == 0 || pos >= n || d[pos] != 0xD8) return true; /* not a JPEG */
    pos++;
    while (pos + 1 < n) {
        if (d[pos] != 0xFF) { /* junk where a marker belongs: stb_image skips to the next 0xFF */
            pos++;
            continue;
        }
        unsigned m = d[pos + 1];
        if (m == 0xFF || m == 0x00) { /* fill byte, or a stuffed zero in junk */
            pos++;
            continue;
        }
        if (m == 0xD8 || m == 0x01 || (m >= 0xD0 && m <= 0xD7)) { /* markers without a length */
            pos += 2;
            continue;
        }
        if (m == 0xD9) break; /* end of image */
        size_t seg = pos + 2, len = byte_at(d, n, seg) << 8 | byte_at(d, n, seg + 1);
        if (m == 0xC4 && !dht_ok(d, n, seg)) return false;
        pos = seg + (len >= 2 ? len : 2);
        if (m == 0xDA) { /* entropy-coded data up to the next real marker */
            while (pos + 1 < n) {
                if (d[pos] == 0xFF && d[pos + 1] != 0x00 && d[pos + 1] != 0xFF &&
                    !(d[pos + 1] >= 0xD0 && d[pos + 1] <= 0xD7))
                    break;
                pos++;
            }
        }
    }
    return true;
}

/* PNG: when an empty IDAT chunk comes before the first one with data, stb_image
 * copies zero bytes to a NULL buffer (memcpy(NULL, src, 0), undefined behaviour
 * that sanitizers report). Such chunks add nothing to the compressed stream and
 * stb_image does not check CRCs, so they are dropped from a copy. */
unsigned char *mn__png_drop_empty_idat(const unsigned char *d, size_t n, size_t *out_size) {
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (n < 8 || memcmp(d, signature, 8) != 0) return NULL;
    unsigned char *copy = NULL;
    size_t pos = 8, out = 8;
    while (pos + 12 <= n) {
        size_t len = (size_t)d[pos] << 24 | (size_t)d[pos + 1] << 16 | (size_t)d[pos + 2] << 8 | d[pos + 3];
        bool idat = !memcmp(d + pos + 4, "IDAT", 4);
        if (idat && len > 0) break; /* the image data has started: nothing more to drop */
        if (len > n - pos - 12) break;
        if (idat) { /* empty: leave it out */
            if (!copy) {
                copy = mn__xmalloc(n, "PNG copy");
                memcpy(copy, d, pos);
                out = pos;
            }
        } else if (copy) {
            memcpy(copy + out, d + pos, len + 12);
            out += len + 12;
        }
        pos += len + 12;
    }
    if (!copy) return NULL;
    memcpy(copy + out, d + pos, n - pos);
    *out_size = out + (n - pos);
    return copy;
}

/* A chunk type as text: its four bytes, a byte that is not a letter written as \xNN. */
static void chunk_type_text(const unsigned char *t, char out[17]) {
    int k = 0;
    for (int i = 0; i < 4; i++) {
        bool letter = (t[i] >= 'A' && t[i] <= 'Z') || (t[i] >= 'a' && t[i] <= 'z');
        k += letter ? snprintf(out + k, 17 - (size_t)k, "%c", t[i]) : snprintf(out + k, 17 - (size_t)k, "\\x%02X", t[i]);
    }
}

/* PNG: stb_image skips the chunks' CRCs, so a damaged file would decode to wrong pixels. Every
 * chunk wholly inside the file up to IEND must carry the CRC-32 of its type and data. */
bool mn__png_crcs_ok(const unsigned char *d, size_t n, const char *name, mn_err *err) {
    static const unsigned char signature[8] = {0x89, 'P', 'N', 'G', '\r', '\n', 0x1A, '\n'};
    if (n < 8 || memcmp(d, signature, 8) != 0) return true; /* not a PNG */
    size_t pos = 8;
    while (pos + 12 <= n) {
        size_t len = (size_t)d[pos] << 24 | (size_t)d[pos + 1] << 16 | (size_t)d[pos + 2] << 8 | d[pos + 3];
        if (len > n - pos - 12) return true; /* runs past the end: stb_image reports the truncation */
        const unsigned char *type = d + pos + 4, *c = type + 4 + len;
        unsigned long want = (unsigned long)c[0] << 24 | (unsigned long)c[1] << 16 | (unsigned long)c[2] << 8 | c[3];
        if (crc32(0L, type, (uInt)(4 + len)) != want) {
            char text[17];
            chunk_type_text(type, text);
            return mn_err_set(err, "%s: PNG chunk \"%s\" at byte offset %zu fails its CRC check (the file is damaged)",
                              name, text, pos);
        }
        if (!memcmp(type, "IEND", 4)) return true;
        pos += len + 12;
    }
    return true;
}
