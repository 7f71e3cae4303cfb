/* Checkpoint directories written as one unit (tensor.h): a staging directory, a manifest of sizes
 * and CRC-32s, fsync, two renames; and the reader's check of the manifest against the files. */
#include "tensor/tensor.h"

#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>
#include <zlib.h>

#define MANIFEST "manifest.json"
#define MANIFEST_FORMAT "mnemo-checkpoint"
#define MAX_FILES 4096

static const char *join(char *buf, size_t cap, const char *dir, const char *name) {
    if (snprintf(buf, cap, "%s/%s", dir, name) >= (int)cap) mn_fatal("checkpoint path too long: %s/%s", dir, name);
    return buf;
}

static bool is_dir(const char *path) {
    struct stat st;
    return stat(path, &st) == 0 && S_ISDIR(st.st_mode);
}

bool mn_make_dirs(const char *path, mn_err *err) {
    char buf[4096];
    if (snprintf(buf, sizeof buf, "%s", path) >= (int)sizeof buf) return mn_err_set(err, "%s: path too long", path);
    for (char *p = buf + 1;; p++) {
        if (*p == '/' || *p == 0) {
            char c = *p;
            *p = 0;
            if (mkdir(buf, 0777) != 0 && errno != EEXIST)
                return mn_err_set(err, "%s: cannot create directory: %s", buf, strerror(errno));
            *p = c;
            if (!c) break;
        }
    }
    if (!is_dir(path)) return mn_err_set(err, "%s: exists and is not a directory", path);
    return true;
}

static bool skip_entry(const char *name) { return !strcmp(name, ".") || !strcmp(name, ".."); }

/* Removes a directory of plain files (a staging or set-aside checkpoint); true if it is gone. */
static bool remove_flat_dir(const char *dir) {
    DIR *d = opendir(dir);
    if (!d) return errno == ENOENT;
    struct dirent *e;
    char path[4200];
    while ((e = readdir(d)))
        if (!skip_entry(e->d_name)) unlink(join(path, sizeof path, dir, e->d_name));
    closedir(d);
    return rmdir(dir) == 0;
}

static void sync_path(const char *path, bool directory) {
    int fd = open(path, directory ? O_RDONLY | O_DIRECTORY : O_RDONLY);
    if (fd < 0) return;
    fsync(fd);
    close(fd);
}

/* The directory holding dir ("." for a bare name), for fsyncing the renames */
static void parent_of(const char *dir, char *out, size_t cap) {
    snprintf(out, cap, "%s", dir);
    size_t n = strlen(out);
    while (n > 1 && out[n - 1] == '/') out[--n] = '\0';
    char *slash = strrchr(out, '/');
    if (!slash) snprintf(out, cap, ".");
    else if (slash == out) out[1] = '\0';
    else *slash = '\0';
}

/* CRC-32 and size of a file; false + err if it cannot be read */
static bool file_crc(const char *path, uint32_t *crc, int64_t *size, mn_err *err) {
    FILE *f = fopen(path, "rb");
    if (!f) return mn_err_set(err, "%s: cannot open: %s", path, strerror(errno));
    unsigned char buf[1 << 16];
    uLong c = crc32(0L, Z_NULL, 0);
    int64_t n = 0;
    size_t got;
    while ((got = fread(buf, 1, sizeof buf, f)) > 0) {
        c = crc32(c, buf, (uInt)got);
        n += (int64_t)got;
    }
    bool bad = ferror(f);
    fclose(f);
    if (bad) return mn_err_set(err, "%s: read error at byte %lld", path, (long long)n);
    *crc = (uint32_t)c, *size = n;
    return true;
}

/* ---- writing -------------------------------------------------------------------------------------- */

bool mn_ckpt_dir_begin(mn_ckpt_dir *c, const char *dir, int64_t step, mn_err *err) {
    memset(c, 0, sizeof *c);
    if (!dir || !*dir) return mn_err_set(err, "a checkpoint needs a directory name");
    if (snprintf(c->dir, sizeof c->dir, "%s", dir) >= (int)sizeof c->dir ||
        snprintf(c->staging, sizeof c->staging, "%s.tmp", dir) >= (int)sizeof c->staging)
        return mn_err_set(err, "%s: path too long", dir);
    size_t n = strlen(c->dir);
    while (n > 1 && c->dir[n - 1] == '/') c->dir[--n] = '\0';
    snprintf(c->staging, sizeof c->staging, "%s.tmp", c->dir);
    c->step = step;
    char parent[4096];
    parent_of(c->dir, parent, sizeof parent);
    if (!mn_make_dirs(parent, err)) return false;
    if (!remove_flat_dir(c->staging)) /* a killed save's leftovers */
        return mn_err_set(err, "%s: cannot remove the unfinished checkpoint left there (%s)", c->staging,
                          strerror(errno));
    if (mkdir(c->staging, 0777) != 0)
        return mn_err_set(err, "%s: cannot create the checkpoint's staging directory: %s", c->staging, strerror(errno));
    c->open = true;
    return true;
}

const char *mn_ckpt_dir_file(const mn_ckpt_dir *c, const char *name, char *buf, size_t cap) {
    return join(buf, cap, c->staging, name);
}

void mn_ckpt_dir_abort(mn_ckpt_dir *c) {
    if (c->open) remove_flat_dir(c->staging);
    c->open = false;
}

/* Files of the previous DIR that the new checkpoint does not write (a log, plots) are carried over
 * as hard links, so replacing DIR loses nothing; DIR must hold plain files only. */
static bool carry_over(const mn_ckpt_dir *c, mn_err *err) {
    char old[4200];
    snprintf(old, sizeof old, "%s.old", c->dir);
    const char *src = is_dir(c->dir) ? c->dir : old; /* (DIR.old: the previous save stopped between its renames) */
    DIR *d = opendir(src);
    if (!d) return errno == ENOENT ? true : mn_err_set(err, "%s: cannot list: %s", src, strerror(errno));
    struct dirent *e;
    bool ok = true;
    char from[4200], to[4200];
    while (ok && (e = readdir(d))) {
        if (skip_entry(e->d_name) || !strcmp(e->d_name, MANIFEST) || strstr(e->d_name, ".tmp.")) continue;
        join(from, sizeof from, src, e->d_name);
        join(to, sizeof to, c->staging, e->d_name);
        struct stat st;
        if (lstat(from, &st) != 0) continue;
        if (!S_ISREG(st.st_mode)) {
            ok = mn_err_set(err, "%s holds '%s', which is not a plain file: a checkpoint directory is replaced as a "
                                 "whole at every save, so give it a directory of its own", src, e->d_name);
            break;
        }
        if (access(to, F_OK) == 0) continue; /* written anew */
        if (link(from, to) != 0)
            ok = mn_err_set(err, "%s: cannot carry '%s' over into the new checkpoint: %s", src, e->d_name,
                            strerror(errno));
    }
    closedir(d);
    return ok;
}

static bool write_manifest(const mn_ckpt_dir *c, mn_err *err) {
    DIR *d = opendir(c->staging);
    if (!d) return mn_err_set(err, "%s: cannot list: %s", c->staging, strerror(errno));
    json_t *files = json_object();
    struct dirent *e;
    bool ok = true;
    char path[4200];
    while (ok && (e = readdir(d))) {
        if (skip_entry(e->d_name) || !strcmp(e->d_name, MANIFEST)) continue;
        uint32_t crc;
        int64_t size;
        join(path, sizeof path, c->staging, e->d_name);
        if (!(ok = file_crc(path, &crc, &size, err))) break;
        sync_path(path, false); /* (the atomic writers synced theirs; links and received files too) */
        char hex[16];
        snprintf(hex, sizeof hex, "%08x", crc);
        json_object_set_new(files, e->d_name, json_pack("{s:I, s:s}", "bytes", (json_int_t)size, "crc32", hex));
    }
    closedir(d);
    if (ok) {
        json_t *root = json_pack("{s:s, s:i, s:I, s:o}", "format", MANIFEST_FORMAT, "version", 1, "step",
                                 (json_int_t)c->step, "files", files);
        char *text = json_dumps(root, JSON_INDENT(2) | JSON_SORT_KEYS);
        json_decref(root);
        if (!text) return mn_err_set(err, "%s: out of memory writing the manifest", c->staging);
        ok = mn_write_file_atomic(join(path, sizeof path, c->staging, MANIFEST), text, strlen(text), err);
        free(text);
    } else {
        json_decref(files);
    }
    return ok;
}

bool mn_ckpt_dir_commit(mn_ckpt_dir *c, mn_err *err) {
    if (!c->open) return mn_err_set(err, "%s: no checkpoint is being written", c->dir);
    char old[4200], parent[4096];
    snprintf(old, sizeof old, "%s.old", c->dir);
    parent_of(c->dir, parent, sizeof parent);
    bool ok = write_manifest(c, err) && carry_over(c, err); /* (carried files are not the checkpoint's) */
    if (ok) sync_path(c->staging, true);
    /* DIR.old is a complete earlier checkpoint only while DIR is missing; otherwise stale */
    if (ok && is_dir(c->dir) && (!remove_flat_dir(old) || rename(c->dir, old) != 0))
        ok = mn_err_set(err, "%s: cannot move the previous checkpoint aside to %s: %s", c->dir, old, strerror(errno));
    if (ok && rename(c->staging, c->dir) != 0)
        ok = mn_err_set(err, "%s: cannot rename %s into place: %s", c->dir, c->staging, strerror(errno));
    if (!ok) {
        mn_ckpt_dir_abort(c);
        return false;
    }
    c->open = false;
    sync_path(parent, true);
    remove_flat_dir(old);
    return true;
}

/* ---- reading -------------------------------------------------------------------------------------- */

static bool check_manifest(const char *dir, int64_t *step, mn_err *err) {
    char path[4200];
    join(path, sizeof path, dir, MANIFEST);
    if (access(path, F_OK) != 0)
        return mn_err_set(err, "%s: no %s: not a complete checkpoint (a save that did not finish, or a directory "
                               "not written by a checkpoint save)", dir, MANIFEST);
    json_error_t je;
    json_t *root = json_load_file(path, JSON_REJECT_DUPLICATES, &je);
    if (!root) return mn_err_set(err, "%s: line %d: %s", path, je.line, je.text);
    json_t *format = json_object_get(root, "format"), *st = json_object_get(root, "step"),
           *files = json_object_get(root, "files");
    bool ok = true;
    if (!json_is_string(format) || strcmp(json_string_value(format), MANIFEST_FORMAT) || !json_is_integer(st) ||
        !json_is_object(files) || json_object_size(files) > MAX_FILES)
        ok = mn_err_set(err, "%s: expected {\"format\": \"%s\", \"step\": N, \"files\": {...}}", path, MANIFEST_FORMAT);
    const char *name;
    json_t *entry;
    json_object_foreach(files, name, entry) {
        if (!ok) break;
        json_t *bytes = json_object_get(entry, "bytes"), *crc = json_object_get(entry, "crc32");
        if (!json_is_integer(bytes) || !json_is_string(crc) || strchr(name, '/') || skip_entry(name)) {
            ok = mn_err_set(err, "%s: file entry \"%s\": expected {\"bytes\": N, \"crc32\": \"hex\"}", path, name);
            break;
        }
        uint32_t got_crc;
        int64_t got_size;
        char file[4200];
        if (!file_crc(join(file, sizeof file, dir, name), &got_crc, &got_size, err)) {
            ok = mn_err_set(err, "%s: %s lists %s, which cannot be read: the checkpoint is incomplete", dir, MANIFEST,
                            name);
            break;
        }
        char hex[16];
        snprintf(hex, sizeof hex, "%08x", got_crc);
        if (got_size != json_integer_value(bytes) || strcmp(hex, json_string_value(crc)))
            ok = mn_err_set(err, "%s: %s is %lld bytes with CRC-32 %s, but %s records %lld bytes with CRC-32 %s: "
                                 "the file does not belong to this checkpoint", dir, name, (long long)got_size, hex,
                            MANIFEST, (long long)json_integer_value(bytes), json_string_value(crc));
    }
    if (ok) *step = json_integer_value(st);
    json_decref(root);
    return ok;
}

bool mn_ckpt_dir_open(const char *dir, char *out, size_t cap, int64_t *step, mn_err *err) {
    int64_t s = 0;
    char old[4200];
    snprintf(old, sizeof old, "%s.old", dir);
    const char *use = dir;
    if (!is_dir(dir)) {
        if (!is_dir(old)) return mn_err_set(err, "%s: no such checkpoint directory", dir);
        use = old; /* a save stopped between its two renames: the previous checkpoint is complete there */
    }
    if (!check_manifest(use, &s, err)) return false;
    if (use == old)
        fprintf(stderr, "note: %s is missing (a save was interrupted); using the previous checkpoint %s (step %lld)\n",
                dir, old, (long long)s);
    if (snprintf(out, cap, "%s", use) >= (int)cap) return mn_err_set(err, "%s: path too long", use);
    if (step) *step = s;
    return true;
}
