/*
 * fs.c - whole-file reads and writes on the blocking pool.
 *
 * File I/O blocks in the kernel whatever the API, so it runs where blocking
 * is allowed and counted: the blocking pool (its queue depth and thread
 * count then tell the truth about file work), as Tokio does, rather than
 * on libuv's separate thread pool.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "ms.h"

typedef struct fs_job {
    size_t len;
    const void *data;           /* write: points into path's allocation */
    char path[];
} fs_job;

static void *read_file_job(void *arg) {
    fs_job *job = arg;
    ms_bytes *out = NULL;
    int fd = open(job->path, O_RDONLY | O_CLOEXEC);
    if (fd < 0) {
        ms_blocking_fail(MS_E_IO, "cannot open %s: %s", job->path, strerror(errno));
        goto done;
    }
    struct stat st;
    size_t cap = fstat(fd, &st) == 0 && st.st_size > 0 ? (size_t)st.st_size + 1 : 4096;
    size_t len = 0;
    out = malloc(sizeof *out + cap + 1);
    for (;;) {
        if (!out) {
            ms_blocking_fail(MS_E_NO_MEMORY, "no memory to read %s", job->path);
            break;
        }
        if (len == cap) {
            cap *= 2;
            ms_bytes *grown = realloc(out, sizeof *out + cap + 1);
            if (!grown)
                free(out);
            out = grown;
            continue;
        }
        ssize_t n = read(fd, out->data + len, cap - len);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0) {
            ms_blocking_fail(MS_E_IO, "cannot read %s: %s", job->path, strerror(errno));
            free(out);
            out = NULL;
            break;
        }
        if (n == 0) {
            out->len = len;
            out->data[len] = '\0';
            break;
        }
        len += (size_t)n;
    }
    close(fd);
done:
    free(job);
    return out;
}

static void *write_file_job(void *arg) {
    fs_job *job = arg;
    int fd = open(job->path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    if (fd < 0) {
        ms_blocking_fail(MS_E_IO, "cannot create %s: %s", job->path, strerror(errno));
    } else {
        const char *p = job->data;
        size_t left = job->len;
        while (left > 0) {
            ssize_t n = write(fd, p, left);
            if (n < 0 && errno == EINTR)
                continue;
            if (n < 0) {
                ms_blocking_fail(MS_E_IO, "cannot write %s: %s", job->path, strerror(errno));
                break;
            }
            p += n;
            left -= (size_t)n;
        }
        if (close(fd) != 0 && left == 0)
            ms_blocking_fail(MS_E_IO, "cannot write %s: %s", job->path, strerror(errno));
    }
    free(job);
    return NULL;
}

static fs_job *job_new(const char *path, const void *data, size_t len) {
    size_t plen = strlen(path) + 1;
    fs_job *job = malloc(sizeof *job + plen + len);
    if (!job)
        return NULL;
    memcpy(job->path, path, plen);
    job->len = len;
    job->data = job->path + plen;
    if (len)
        memcpy(job->path + plen, data, len);
    return job;
}

int ms_fs_read_file(ms_runtime *rt, const char *path, ms_task **handle) {
    if (!rt || !path)
        return MS_E_INVALID_ARGUMENT;
    fs_job *job = job_new(path, NULL, 0);
    if (!job)
        return MS_E_NO_MEMORY;
    int rc = ms_spawn_blocking(rt, read_file_job, job, handle);
    if (rc != 0)
        free(job);
    return rc;
}

int ms_fs_write_file(ms_runtime *rt, const char *path, const void *data, size_t len,
                     ms_task **handle) {
    if (!rt || !path || (!data && len))
        return MS_E_INVALID_ARGUMENT;
    fs_job *job = job_new(path, data, len);
    if (!job)
        return MS_E_NO_MEMORY;
    int rc = ms_spawn_blocking(rt, write_file_job, job, handle);
    if (rc != 0)
        free(job);
    return rc;
}
