/* Several processes, on one machine or many: meta-training over MPI ranks. A program launched by
 * mpirun starts MPI through mn_meta_mpi_init; the trainer then gives each rank a slice of the task
 * slots, sums their estimates in slot order (so the result does not depend on the number of ranks),
 * and checkpoints through rank 0, which receives the other ranks' files (no shared file system is
 * needed). A plain run never touches MPI. Without MPI in the build every program is rank 0 of 1. */
#include "meta/meta_internal.h"

#include <dirent.h>
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#ifdef MN_HAVE_MPI
#include <mpi.h>
#endif

static int g_rank = 0, g_size = 1;
static bool g_started;

bool mn_meta_mpi_available(void) {
#ifdef MN_HAVE_MPI
    return true;
#else
    return false;
#endif
}

/* mpirun (OpenMPI, or a PMI launcher) tells its processes in the environment. */
static bool launched_by_mpirun(void) {
    return getenv("OMPI_COMM_WORLD_SIZE") || getenv("PMIX_RANK") || getenv("PMI_SIZE");
}

int mn_meta_mpi_init(int *argc, char ***argv, int *size) {
#ifdef MN_HAVE_MPI
    if (!g_started && launched_by_mpirun()) {
        int provided;
        MPI_Init_thread(argc, argv, MPI_THREAD_FUNNELED, &provided);
        MPI_Comm_rank(MPI_COMM_WORLD, &g_rank);
        MPI_Comm_size(MPI_COMM_WORLD, &g_size);
        g_started = true;
    }
#else
    (void)argc, (void)argv;
#endif
    if (size) *size = g_size;
    return g_rank;
}

void mn_meta_mpi_finalize(void) {
#ifdef MN_HAVE_MPI
    if (g_started) MPI_Finalize();
#endif
    g_started = false;
    g_rank = 0, g_size = 1;
}

int meta_mpi_rank(void) { return g_rank; }
int meta_mpi_size(void) { return g_size; }

void meta_mpi_sum(double *buf, int64_t n) {
#ifdef MN_HAVE_MPI
    if (g_size > 1)
        for (int64_t at = 0; at < n; at += INT_MAX / 2) {
            int chunk = (int)(n - at < INT_MAX / 2 ? n - at : INT_MAX / 2);
            MPI_Allreduce(MPI_IN_PLACE, buf + at, chunk, MPI_DOUBLE, MPI_SUM, MPI_COMM_WORLD);
        }
#else
    (void)buf, (void)n;
#endif
}

bool meta_mpi_all(bool ok) {
#ifdef MN_HAVE_MPI
    if (g_size > 1) {
        int v = ok, all = 0;
        MPI_Allreduce(&v, &all, 1, MPI_INT, MPI_MIN, MPI_COMM_WORLD);
        return all != 0;
    }
#endif
    return ok;
}

#ifdef MN_HAVE_MPI
static void send_bytes(const void *data, int64_t n, int dest) {
    MPI_Send(&n, 1, MPI_INT64_T, dest, 1, MPI_COMM_WORLD);
    for (int64_t at = 0; at < n; at += INT_MAX / 2) {
        int chunk = (int)(n - at < INT_MAX / 2 ? n - at : INT_MAX / 2);
        MPI_Send((const char *)data + at, chunk, MPI_BYTE, dest, 2, MPI_COMM_WORLD);
    }
}

static char *recv_bytes(int src, int64_t *n) {
    MPI_Recv(n, 1, MPI_INT64_T, src, 1, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    char *data = malloc((size_t)*n + 1);
    if (!data) mn_fatal("meta MPI: out of memory receiving %lld bytes", (long long)*n);
    for (int64_t at = 0; at < *n; at += INT_MAX / 2) {
        int chunk = (int)(*n - at < INT_MAX / 2 ? *n - at : INT_MAX / 2);
        MPI_Recv(data + at, chunk, MPI_BYTE, src, 2, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    }
    data[*n] = 0;
    return data;
}
#endif

/* The regular files of dir, names sorted. */
static int list_files(const char *dir, char ***names) {
    DIR *d = opendir(dir);
    *names = NULL;
    if (!d) return 0;
    int n = 0, cap = 0;
    struct dirent *e;
    while ((e = readdir(d))) {
        if (e->d_name[0] == '.') continue;
        if (n == cap) {
            cap = cap ? 2 * cap : 32;
            *names = realloc(*names, sizeof **names * (size_t)cap);
            if (!*names) mn_fatal("meta MPI: out of memory");
        }
        (*names)[n++] = strdup(e->d_name);
    }
    closedir(d);
    for (int i = 1; i < n; i++)
        for (int j = i; j > 0 && strcmp((*names)[j - 1], (*names)[j]) > 0; j--) {
            char *t = (*names)[j];
            (*names)[j] = (*names)[j - 1], (*names)[j - 1] = t;
        }
    return n;
}

/* Sends the files of dir from this rank to rank dest (which calls meta_mpi_recv_files). */
bool meta_mpi_send_files(const char *dir, int dest, mn_err *err) {
#ifdef MN_HAVE_MPI
    char **names;
    int64_t n = list_files(dir, &names);
    MPI_Send(&n, 1, MPI_INT64_T, dest, 0, MPI_COMM_WORLD);
    bool ok = true;
    for (int64_t i = 0; i < n; i++) {
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, names[i]);
        size_t size = 0;
        mn_err why;
        char *data = ok ? mn_read_file(path, &size, 0, &why) : NULL;
        if (!data && ok) ok = mn_err_set(err, "%s", why.msg);
        send_bytes(names[i], (int64_t)strlen(names[i]), dest);
        send_bytes(data ? data : "", data ? (int64_t)size : 0, dest); /* a failed read still keeps the protocol */
        free(data);
        free(names[i]);
    }
    free(names);
    return ok;
#else
    (void)dir, (void)dest;
    return mn_err_set(err, "this build has no MPI");
#endif
}

/* Receives the files rank src sends into dir (which exists). */
bool meta_mpi_recv_files(const char *dir, int src, mn_err *err) {
#ifdef MN_HAVE_MPI
    int64_t n;
    MPI_Recv(&n, 1, MPI_INT64_T, src, 0, MPI_COMM_WORLD, MPI_STATUS_IGNORE);
    bool ok = true;
    for (int64_t i = 0; i < n; i++) {
        int64_t len, size;
        char *name = recv_bytes(src, &len), *data = recv_bytes(src, &size);
        char path[4200];
        snprintf(path, sizeof path, "%s/%s", dir, name);
        if (ok && (strchr(name, '/') || !mn_write_file_atomic(path, data, (size_t)size, err))) {
            if (strchr(name, '/')) mn_err_set(err, "rank %d sent a file name with a '/': %s", src, name);
            ok = false;
        }
        free(name);
        free(data);
    }
    return ok;
#else
    (void)dir, (void)src;
    return mn_err_set(err, "this build has no MPI");
#endif
}

/* Rank 0's files of dir reach every other rank's dir (created if missing). */
bool meta_mpi_bcast_files(const char *dir, mn_err *err) {
    if (g_size == 1) return true;
    bool ok = true;
    if (g_rank == 0) {
        for (int r = 1; r < g_size; r++) ok &= meta_mpi_send_files(dir, r, err);
    } else {
        ok = mn_make_dirs(dir, err);
        ok = meta_mpi_recv_files(dir, 0, err) && ok;
    }
    return ok;
}
