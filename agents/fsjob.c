/*
 * fsjob.c - file-system calls as blocking-pool jobs (see fsjob.h).
 *
 * File I/O blocks in the kernel whatever the API, so every call runs on
 * the blocking pool, where blocking is allowed and counted: the pool's
 * queue depth and thread count then tell the truth about file work.  A
 * job only fills in its request's results; errno values travel back as
 * numbers and the agent builds the messages.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "fsjob.h"

/* Every live request, so that fsjob_reap_all can free the ones whose job
 * the runtime cancelled before it ran.  Under g_lock. */
static pthread_mutex_t g_lock = PTHREAD_MUTEX_INITIALIZER;
static fs_req *g_reqs;

static _Atomic uint64_t c_open, c_opened, c_read, c_written, c_jobs, c_discarded;

void fsjob_counters(fs_counters *out) {
    out->open = atomic_load_explicit(&c_open, memory_order_relaxed);
    out->opened = atomic_load_explicit(&c_opened, memory_order_relaxed);
    out->bytes_read = atomic_load_explicit(&c_read, memory_order_relaxed);
    out->bytes_written = atomic_load_explicit(&c_written, memory_order_relaxed);
    out->jobs = atomic_load_explicit(&c_jobs, memory_order_relaxed);
    out->discarded = atomic_load_explicit(&c_discarded, memory_order_relaxed);
}

static void count(_Atomic uint64_t *c, uint64_t n) {
    atomic_fetch_add_explicit(c, n, memory_order_relaxed);
}

/* ---- open files ---- */

fs_file *fsfile_new(int fd, const char *path) {
    size_t plen = strlen(path) + 1;
    fs_file *f = malloc(sizeof *f + plen);
    if (!f) {
        close(fd);
        return NULL;
    }
    atomic_init(&f->refs, 1);
    f->fd = fd;
    memcpy(f->path, path, plen);
    count(&c_open, 1);
    count(&c_opened, 1);
    return f;
}

void fsfile_ref(fs_file *f) {
    atomic_fetch_add_explicit(&f->refs, 1, memory_order_relaxed);
}

void fsfile_unref(fs_file *f) {
    if (!f || atomic_fetch_sub_explicit(&f->refs, 1, memory_order_acq_rel) != 1)
        return;
    /* The last holder: a handle collected or its agent ended without
     * close (close(2) on a regular file does not wait for the disk). */
    if (f->fd >= 0) {
        close(f->fd);
        atomic_fetch_sub_explicit(&c_open, 1, memory_order_relaxed);
    }
    free(f);
}

/* ---- requests ---- */

fs_req *fsreq_new(fs_kind kind) {
    fs_req *r = calloc(1, sizeof *r);
    if (!r)
        return NULL;
    atomic_init(&r->refs, 2);
    r->kind = kind;
    r->fd = -1;
    pthread_mutex_lock(&g_lock);
    r->tnext = g_reqs;
    if (g_reqs)
        g_reqs->tprev = r;
    g_reqs = r;
    pthread_mutex_unlock(&g_lock);
    return r;
}

static void untrack(fs_req *r) {
    pthread_mutex_lock(&g_lock);
    if (r->tprev)
        r->tprev->tnext = r->tnext;
    else if (g_reqs == r)
        g_reqs = r->tnext;
    if (r->tnext)
        r->tnext->tprev = r->tprev;
    pthread_mutex_unlock(&g_lock);
}

/* Frees r and whatever of its results nobody took. */
static void discard(fs_req *r) {
    if (r->fd >= 0)
        close(r->fd);
    fsfile_unref(r->file);
    free(r->buf);
    free(r->data);
    free(r->path);
    free(r->path2);
    free(r);
}

void fsreq_drop(fs_req *r) {
    if (!r || atomic_fetch_sub_explicit(&r->refs, 1, memory_order_acq_rel) != 1)
        return;
    untrack(r);
    discard(r);
}

void fsjob_reap_all(void) {
    pthread_mutex_lock(&g_lock);
    fs_req *r = g_reqs;
    g_reqs = NULL;
    pthread_mutex_unlock(&g_lock);
    while (r) {
        fs_req *next = r->tnext;
        discard(r);
        r = next;
    }
}

/* ---- the calls ---- */

static bool failed(fs_req *r, const char *step, const char *path) {
    r->err = errno ? errno : EIO;
    r->step = step;
    r->err_path = path;
    return false;
}

static bool write_all(int fd, const char *p, size_t left) {
    while (left > 0) {
        ssize_t n = write(fd, p, left);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0)
            return false;
        count(&c_written, (uint64_t)n);
        p += n;
        left -= (size_t)n;
    }
    return true;
}

/* Reads fd to its end into r->buf.  size_hint: the file's size, if known. */
static bool read_to_end(fs_req *r, int fd, size_t size_hint) {
    size_t cap = size_hint > 0 ? size_hint + 1 : 4096, len = 0;
    char *buf = malloc(cap);
    for (;;) {
        if (!buf) {
            errno = ENOMEM;
            return failed(r, "read", r->path);
        }
        if (r->max_len && len > r->max_len) {
            free(buf);
            errno = EFBIG;
            return failed(r, "read", r->path);
        }
        if (len == cap) {
            char *grown = cap < ((size_t)1 << 62) ? realloc(buf, cap * 2) : NULL;
            if (!grown)
                free(buf);
            buf = grown;
            cap *= 2;
            continue;
        }
        ssize_t n = read(fd, buf + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            int e = errno;
            free(buf);
            errno = e;
            return failed(r, "read", r->path);
        }
        if (n == 0)
            break;
        count(&c_read, (uint64_t)n);
        len += (size_t)n;
    }
    r->buf = buf;
    r->buflen = len;
    return true;
}

/* Opens r->path for a job that needs a regular file (not a directory). */
static int open_file(fs_req *r, int flags, unsigned mode) {
    int fd = open(r->path, flags | O_CLOEXEC, mode);
    if (fd < 0)
        return failed(r, "open", r->path), -1;
    struct stat st;
    if (fstat(fd, &st) == 0 && S_ISDIR(st.st_mode)) {
        close(fd);
        errno = EISDIR;
        return failed(r, "open", r->path), -1;
    }
    return fd;
}

static void do_open(fs_req *r) {
    r->fd = open_file(r, r->flags, r->mode);
}

static void do_read(fs_req *r) {
    char *buf = malloc(r->n ? r->n : 1);
    if (!buf) {
        errno = ENOMEM;
        failed(r, "read", r->file->path);
        return;
    }
    ssize_t n;
    do
        n = read(r->file->fd, buf, r->n);
    while (n < 0 && errno == EINTR);
    if (n < 0) {
        int e = errno;
        free(buf);
        errno = e;
        failed(r, "read", r->file->path);
        return;
    }
    count(&c_read, (uint64_t)n);
    r->buf = buf;
    r->buflen = (size_t)n;
}

static void do_write(fs_req *r) {
    if (!write_all(r->file->fd, r->data, r->len))
        failed(r, "write", r->file->path);
}

static void do_seek(fs_req *r) {
    off_t pos = lseek(r->file->fd, (off_t)r->offset, r->whence);
    if (pos < 0)
        failed(r, "seek", r->file->path);
    r->pos = pos;
}

static void do_close(fs_req *r) {
    int fd = r->file->fd;
    r->file->fd = -1;
    atomic_fetch_sub_explicit(&c_open, 1, memory_order_relaxed);
    if (close(fd) != 0 && errno != EINTR)
        failed(r, "close", r->file->path);
}

static void do_read_file(fs_req *r) {
    int fd = open_file(r, O_RDONLY, 0);
    if (fd < 0)
        return;
    struct stat st;
    size_t hint = fstat(fd, &st) == 0 && S_ISREG(st.st_mode) ? (size_t)st.st_size : 0;
    if (r->max_len && hint > r->max_len) {
        close(fd);
        errno = EFBIG;
        failed(r, "read", r->path);
        return;
    }
    read_to_end(r, fd, r->max_len && hint > r->max_len ? 0 : hint);
    close(fd);
}

/* Makes the rename durable: the directory entry is on disk too. */
static void sync_dir_of(const char *path) {
    char *copy = strdup(path);
    if (!copy)
        return;
    int dfd = open(dirname(copy), O_RDONLY | O_DIRECTORY | O_CLOEXEC);
    free(copy);
    if (dfd >= 0) {
        fsync(dfd);
        close(dfd);
    }
}

static void do_write_file(fs_req *r) {
    size_t plen = strlen(r->path);
    char *tmp = malloc(plen + 16);
    if (!tmp) {
        errno = ENOMEM;
        failed(r, "write", r->path);
        return;
    }
    /* Beside the target, so that the rename stays on one file system. */
    snprintf(tmp, plen + 16, "%s.tmp-XXXXXX", r->path);
    int fd = mkostemp(tmp, O_CLOEXEC);
    if (fd < 0) {
        failed(r, "create a temporary file beside", r->path);
        free(tmp);
        return;
    }
    struct stat st;
    unsigned mode = r->mode ? r->mode : stat(r->path, &st) == 0 ? st.st_mode & 07777 : 0644;
    bool ok = (fchmod(fd, mode) == 0 || failed(r, "set the mode of", r->path)) &&
              (write_all(fd, r->data, r->len) || failed(r, "write", r->path)) &&
              (fsync(fd) == 0 || failed(r, "fsync", r->path));
    if (close(fd) != 0 && ok)
        ok = failed(r, "write", r->path);
    if (ok && rename(tmp, r->path) != 0)
        ok = failed(r, "rename a temporary file to", r->path);
    if (!ok)
        unlink(tmp);
    else
        sync_dir_of(r->path);
    free(tmp);
}

static void do_stat(fs_req *r) {
    if (stat(r->path, &r->st) != 0)
        failed(r, "stat", r->path);
}

static int name_cmp(const void *a, const void *b) {
    return strcmp(*(char *const *)a, *(char *const *)b);
}

/* The names in a directory (without . and ..), sorted, NUL-separated. */
static void do_list(fs_req *r) {
    DIR *d = opendir(r->path);
    if (!d) {
        failed(r, "list", r->path);
        return;
    }
    size_t n = 0, cap = 64, bytes = 0;
    char **names = malloc(cap * sizeof *names);
    struct dirent *e;
    errno = 0;
    while (names && (e = readdir(d))) {
        if (strcmp(e->d_name, ".") == 0 || strcmp(e->d_name, "..") == 0)
            continue;
        if (n == cap) {
            char **grown = realloc(names, cap * 2 * sizeof *names);
            if (!grown)
                break;
            names = grown;
            cap *= 2;
        }
        if (!(names[n] = strdup(e->d_name)))
            break;
        bytes += strlen(names[n]) + 1;
        n++;
    }
    int e_read = names ? errno : ENOMEM;
    closedir(d);
    char *buf = e_read == 0 ? malloc(bytes ? bytes : 1) : NULL;
    if (!buf && e_read == 0)
        e_read = ENOMEM;
    if (buf) {
        qsort(names, n, sizeof *names, name_cmp);
        size_t at = 0;
        for (size_t i = 0; i < n; i++) {
            size_t len = strlen(names[i]) + 1;
            memcpy(buf + at, names[i], len);
            at += len;
        }
        r->buf = buf;
        r->buflen = bytes;
        r->count = n;
    }
    for (size_t i = 0; names && i < n; i++)
        free(names[i]);
    free(names);
    if (e_read) {
        errno = e_read;
        failed(r, "list", r->path);
    }
}

static void do_remove(fs_req *r) {
    if (remove(r->path) != 0)
        failed(r, "remove", r->path);
}

static void do_rename(fs_req *r) {
    if (rename(r->path, r->path2) != 0)
        failed(r, "rename", r->path);
}

/* mkdir -p: each missing parent in turn; an existing directory is fine
 * for a parent, and for the path itself only with parents. */
static void do_mkdir(fs_req *r) {
    if (!r->parents) {
        if (mkdir(r->path, r->mode) != 0)
            failed(r, "make the directory", r->path);
        return;
    }
    char *p = strdup(r->path);
    if (!p) {
        errno = ENOMEM;
        failed(r, "make the directory", r->path);
        return;
    }
    for (char *s = p + 1;; s++) {
        bool last = *s == '\0';
        if (*s != '/' && !last)
            continue;
        char saved = *s;
        *s = '\0';
        struct stat st;
        if (mkdir(p, r->mode) != 0 && !(errno == EEXIST && stat(p, &st) == 0 &&
                                        S_ISDIR(st.st_mode))) {
            if (errno == EEXIST)
                errno = ENOTDIR;
            failed(r, "make the directory", r->path);
            break;
        }
        *s = saved;
        if (last)
            break;
    }
    free(p);
}

static void *fs_job(void *arg) {
    fs_req *r = arg;
    count(&c_jobs, 1);
    errno = 0;
    switch (r->kind) {
    case FS_OPEN: do_open(r); break;
    case FS_READ: do_read(r); break;
    case FS_WRITE: do_write(r); break;
    case FS_SEEK: do_seek(r); break;
    case FS_CLOSE: do_close(r); break;
    case FS_READ_FILE: do_read_file(r); break;
    case FS_WRITE_FILE: do_write_file(r); break;
    case FS_STAT: do_stat(r); break;
    case FS_LIST: do_list(r); break;
    case FS_REMOVE: do_remove(r); break;
    case FS_RENAME: do_rename(r); break;
    case FS_MKDIR: do_mkdir(r); break;
    }
    /* The waiter's reference gone (its task was stopped): this drop
     * discards the result. */
    if (atomic_load_explicit(&r->refs, memory_order_acquire) == 1)
        count(&c_discarded, 1);
    fsreq_drop(r);
    return NULL;
}

int fsreq_submit(ms_runtime *rt, fs_req *req, ms_task **job) {
    return ms_spawn_blocking(rt, fs_job, req, job);
}
