/*
 * fsjob.h - file-system calls as jobs on libms's blocking pool, for
 * ms.fs (lfs.c).  No Lua here.
 *
 * A request (fs_req) is shared by the blocking job that carries it out
 * and the agent task that waits for it: two references.  Whoever drops
 * the last one discards what the other did not take: a task stopped while
 * its job runs lets go at once (the agent does not wait), and when the
 * job ends its result is thrown away, a descriptor it opened closed.  A
 * job that the runtime's shutdown cancels before it ran never drops its
 * reference; fsjob_reap_all frees those once no thread is left.
 *
 * An open file (fs_file) is shared the same way by its Lua handle and the
 * jobs that use it: the descriptor is closed when the last one lets go,
 * so collecting a handle while a read on it is still running on the pool
 * never closes a descriptor under the read.
 */
#ifndef MS_AGENTS_FSJOB_H
#define MS_AGENTS_FSJOB_H

#include <stdatomic.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/stat.h>

#include "ms.h"

typedef enum fs_kind {
    FS_OPEN,
    FS_READ,
    FS_WRITE,
    FS_SEEK,
    FS_CLOSE,
    FS_READ_FILE,
    FS_WRITE_FILE,              /* atomic: temp file, fsync, rename, fsync the directory */
    FS_STAT,
    FS_LIST,
    FS_REMOVE,
    FS_RENAME,
    FS_MKDIR
} fs_kind;

typedef struct fs_file {
    _Atomic uint32_t refs;      /* the handle's and each running job's */
    /* The descriptor, or -1 once FS_CLOSE took it.  Written by the close
     * job only, which runs while the handle marks itself closed, so no
     * other job uses the file then (lfs.c runs one job per handle at a
     * time). */
    int fd;
    char path[];
} fs_file;

typedef struct fs_req fs_req;
struct fs_req {
    _Atomic uint32_t refs;      /* the job's and the waiter's */
    fs_req *tprev, *tnext;      /* every live request, under fsjob.c's lock */
    fs_kind kind;
    /* Arguments: set before submission, read by the job. */
    char *path, *path2;         /* path2: rename's target */
    int flags;                  /* open: open(2) flags */
    unsigned mode;              /* open, mkdir, write_file: permission bits */
    bool parents;               /* mkdir: make missing parents */
    fs_file *file;              /* read/write/seek/close: a reference */
    size_t n;                   /* read: at most n bytes */
    /* read_file: refuse (EFBIG) a file longer than this, 0 = no limit:
     * what the agent's memory limit leaves, so that a huge file is not
     * read into C memory only to fail in Lua. */
    size_t max_len;
    char *data;                 /* write, write_file: a copy, len bytes */
    size_t len;
    int64_t offset;             /* seek */
    int whence;
    /* Results: written by the job, read by the waiter after the join. */
    int err;                    /* errno, 0 on success */
    const char *step;           /* what failed: "open", "read", "fsync", ... */
    const char *err_path;       /* the path that failed (path or path2) */
    int fd;                     /* open: the new descriptor until taken, else -1 */
    char *buf;                  /* read, read_file: the bytes; list: names, NUL-separated */
    size_t buflen;
    size_t count;               /* list: the number of names */
    struct stat st;             /* stat */
    int64_t pos;                /* seek: the new offset */
};

/* Counters for ms.metrics().files and /metrics (relaxed atomics, any
 * thread). */
typedef struct fs_counters {
    uint64_t open;              /* open file handles (descriptors of ms.fs.open) */
    uint64_t opened;            /* handles opened since start */
    uint64_t bytes_read, bytes_written;
    uint64_t jobs;              /* file jobs run on the blocking pool */
    uint64_t discarded;         /* results thrown away: their task was stopped */
} fs_counters;

void fsjob_counters(fs_counters *out);

/* A request with both references and tracked; NULL without memory. */
fs_req *fsreq_new(fs_kind kind);
/* Starts req's job on the blocking pool.  On failure the job will never
 * run: the caller drops both references. */
int fsreq_submit(ms_runtime *rt, fs_req *req, ms_task **job);
/* Lets go of one reference; the last discards (see the top). */
void fsreq_drop(fs_req *req);
/* After the runtime has shut down (no thread left): frees every request
 * still alive, closing what they opened. */
void fsjob_reap_all(void);

/* An open file around fd (taking it); NULL without memory (fd is then
 * closed). */
fs_file *fsfile_new(int fd, const char *path);
void fsfile_ref(fs_file *f);
/* The last reference closes the descriptor (if not closed yet). */
void fsfile_unref(fs_file *f);

#endif
