/*
 * lfs.c - ms.fs and file handles (docs/files.md).
 *
 * Every call records a request (fsjob.h), starts its job on the blocking
 * pool and suspends the calling task on it (an ops.c operation of its
 * own: poll joins the job, cancel abandons it).  So a task waiting on a
 * file never holds a worker, the blocking pool's metrics count the work,
 * and stopping the agent ends the wait at once: the job finishes on its
 * own and its result is discarded (a descriptor it opened is closed).
 *
 * A file handle is a userdata holding a reference to its fs_file; the
 * descriptor closes when the handle is closed, collected or its agent
 * ends, or, if a job still uses it then, when that job ends.  One job per
 * handle at a time (a second task using the same handle meanwhile gets an
 * error), so close never races a read.  Open handles count with the
 * agent's sockets and processes against agent_io_limit and host_io_limit
 * (iohandle.c), and whatever is still open closes at the agent's end.
 *
 * Errors of the operating system are values: nil and an error value
 * whose message names the call, the step, the path and the errno text
 * ("ms.fs.open: cannot open /x: No such file or directory"), with
 * err.path and err.errno ("ENOENT").  Misuse (a bad argument, a closed
 * or busy handle) raises.
 */
#define _GNU_SOURCE
#include <errno.h>
#include <fcntl.h>
#include <lauxlib.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "facts.h"
#include "fsjob.h"
#include "hold.h"
#include "host.h"
#include "iohandle.h"
#include "lerr.h"
#include "lfs.h"
#include "ltask.h"
#include "ops.h"

#define FILE_MT "ms.file"
/* The most one f:read(n) returns. */
#define READ_MAX (64u * 1024 * 1024)
#define READ_DEFAULT (64u * 1024)

/* A file handle's userdata.  Agent thread only. */
typedef struct lfile {
    ioh io;                     /* first: the handle from its ioh (close_at_end) */
    fs_file *f;                 /* NULL once closed */
    bool busy;                  /* a job on it is running */
} lfile;

/* The handle's descriptor goes, and the handle is out of the counts.
 * A job still using the file holds a reference of its own: the
 * descriptor closes when that job ends. */
static void release_handle(lfile *h) {
    if (h->f) {
        fsfile_unref(h->f);
        h->f = NULL;
    }
    ioh_closed(&h->io);
}

/* The agent's end (ioh_close_all, before its state closes): the
 * userdata is still there, and its finalizer finds it closed. */
static void close_at_end(ioh *io) {
    release_handle((lfile *)io);
}

static const ioh_kind file_kind = {"file", -1, close_at_end};

/* The operation a waiting task has in its op store. */
typedef struct fs_op {
    fs_req *req;
    ms_task *job;
    lfile *handle;              /* the handle the job uses, or NULL */
    const char *fname;          /* "ms.fs.open", for messages */
} fs_op;

_Static_assert(sizeof(fs_op) <= sizeof(((lop *)0)->store), "fs_op fits the op store");

/* ---- errors ---- */

static void push_os_error(lua_State *L, const char *fname, const fs_req *r) {
    char message[PATH_MAX + 200];
    const char *path = r->err_path ? r->err_path : r->path ? r->path : "?";
    snprintf(message, sizeof message, "%s: cannot %s %s: %s", fname, r->step ? r->step : "use",
             path, strerror(r->err));
    lua_pushnil(L);
    lerr_push(L, MS_E_IO, message, NULL);
    lua_pushstring(L, path);
    lua_setfield(L, -2, "path");
    const char *name = strerrorname_np(r->err);
    lua_pushstring(L, name ? name : "EIO");
    lua_setfield(L, -2, "errno");
}

static int push_failure(lua_State *L, int code, const char *message) {
    lua_pushnil(L);
    lerr_push(L, code, message, NULL);
    return 2;
}

/* ---- arguments ---- */

static agent *check_allowed(lua_State *L, const char *fname) {
    agent *a = agent_from_state(L);
    if (a && a->sandbox)
        luaL_error(L, "%s: files are not available in a sandboxed agent", fname);
    return a;
}

static const char *check_path(lua_State *L, int idx) {
    size_t len;
    const char *p = luaL_checklstring(L, idx, &len);
    if (len == 0)
        luaL_argerror(L, idx, "the path is empty");
    if (strlen(p) != len)
        luaL_argerror(L, idx, "the path contains a NUL byte");
    if (len >= PATH_MAX)
        luaL_argerror(L, idx, "the path is longer than PATH_MAX");
    return p;
}

static char *dup_or_raise(lua_State *L, fs_req *r, const char *s) {
    char *d = strdup(s);
    if (!d) {
        fsreq_drop(r);
        fsreq_drop(r);
        luaL_error(L, "not enough memory");
    }
    return d;
}

static fs_req *new_req(lua_State *L, fs_kind kind, const char *path) {
    fs_req *r = fsreq_new(kind);
    if (!r)
        luaL_error(L, "not enough memory");
    if (path)
        r->path = dup_or_raise(L, r, path);
    return r;
}

/* ---- the operation ---- */

static void push_file_mt(lua_State *L);


static void push_stat(lua_State *L, const struct stat *st) {
    const char *type = S_ISREG(st->st_mode)    ? "file"
                       : S_ISDIR(st->st_mode)  ? "directory"
                       : S_ISLNK(st->st_mode)  ? "link"
                       : S_ISFIFO(st->st_mode) ? "fifo"
                       : S_ISSOCK(st->st_mode) ? "socket"
                       : S_ISCHR(st->st_mode)  ? "char_device"
                       : S_ISBLK(st->st_mode)  ? "block_device"
                                               : "other";
    lua_createtable(L, 0, 11);
    lua_pushstring(L, type);
    lua_setfield(L, -2, "type");
#define FIELD(k, v)                      \
    do {                                 \
        lua_pushnumber(L, (double)(v));  \
        lua_setfield(L, -2, k);          \
    } while (0)
    FIELD("size", st->st_size);
    FIELD("mode", st->st_mode & 07777);
    FIELD("mtime", st->st_mtim.tv_sec + st->st_mtim.tv_nsec / 1e9);
    FIELD("atime", st->st_atim.tv_sec + st->st_atim.tv_nsec / 1e9);
    FIELD("ctime", st->st_ctim.tv_sec + st->st_ctim.tv_nsec / 1e9);
    FIELD("nlink", st->st_nlink);
    FIELD("uid", st->st_uid);
    FIELD("gid", st->st_gid);
    FIELD("ino", st->st_ino);
    FIELD("dev", st->st_dev);
#undef FIELD
}

/* The open job's descriptor as a new handle. */
static int push_opened(lua_State *L, fs_op *o, fs_req *r) {
    lfile *h = lua_newuserdata(L, sizeof *h);
    memset(h, 0, sizeof *h);
    push_file_mt(L);
    lua_setmetatable(L, -2);
    char why[200];
    if (!ioh_open(agent_from_state(L), &h->io, &file_kind, why, sizeof why)) {
        char message[300];
        snprintf(message, sizeof message, "%s: %s", o->fname, why);
        return push_failure(L, MS_E_EXHAUSTED, message); /* r's descriptor goes with r */
    }
    fs_file *f = fsfile_new(r->fd, r->path);
    r->fd = -1; /* taken (fsfile_new closes it when it fails) */
    if (!f) {
        ioh_closed(&h->io);
        return luaL_error(L, "%s: not enough memory", o->fname);
    }
    h->f = f;
    return 1;
}

/* Pushes the results of r's job on co; returns how many. */
static int push_results(lua_State *co, fs_op *o, fs_req *r) {
    if (r->err) {
        push_os_error(co, o->fname, r);
        return 2;
    }
    switch (r->kind) {
    case FS_OPEN: return push_opened(co, o, r);
    case FS_READ:
    case FS_READ_FILE: lua_pushlstring(co, r->buf ? r->buf : "", r->buflen); return 1;
    case FS_SEEK: lua_pushnumber(co, (double)r->pos); return 1;
    case FS_STAT: push_stat(co, &r->st); return 1;
    case FS_LIST: {
        lua_createtable(co, (int)r->count, 0);
        const char *p = r->buf;
        for (size_t i = 0; i < r->count; i++) {
            size_t len = strlen(p);
            lua_pushlstring(co, p, len);
            lua_rawseti(co, -2, (int)i + 1);
            p += len + 1;
        }
        return 1;
    }
    default: lua_pushboolean(co, 1); return 1;
    }
}

static void drop_held(void *p) {
    fsreq_drop(p);
}

static ms_poll fs_poll(ltask *lt, ms_cx *cx) {
    fs_op *o = (fs_op *)lt->op.store;
    int result = 0;
    if (ms_task_poll_join(o->job, cx, NULL, &result, NULL) == MS_POLL_PENDING)
        return MS_POLL_PENDING;
    ms_task_release(o->job);
    o->job = NULL;
    if (o->handle)
        o->handle->busy = false;
    fs_req *r = o->req;
    o->req = NULL;
    lua_State *co = lt->co;
    lua_settop(co, 0); /* the handle anchored while the job ran */
    /* Held while Lua values are built (they may raise): a raise drops the
     * request, closing a descriptor nobody took. */
    hold_push(r, drop_held);
    if (result != 0) {
        char message[120];
        snprintf(message, sizeof message, "%s: the runtime cancelled the job (shutting down)",
                 o->fname);
        lt->nres = push_failure(co, MS_E_SHUTTING_DOWN, message);
    } else {
        lt->nres = push_results(co, o, r);
    }
    hold_pop(r);
    fsreq_drop(r);
    return MS_POLL_READY;
}

/* The task was stopped or aborted: the agent does not wait for the job;
 * whichever of the two lets go last discards the result. */
static void fs_cancel(ltask *lt) {
    fs_op *o = (fs_op *)lt->op.store;
    if (o->job) {
        ms_task_release(o->job);
        o->job = NULL;
    }
    if (o->handle)
        o->handle->busy = false;
    fsreq_drop(o->req);
    o->req = NULL;
}

/* Starts r's job and suspends the running task on it.  The value at
 * anchor_idx (the handle, or 0 for none) stays on the task's stack until
 * the job ends. */
static int start(lua_State *L, ltask *lt, fs_req *r, const char *fname, lfile *handle,
                 int anchor_idx) {
    agent *a = lt->a;
    ms_task *job = NULL;
    int rc = fsreq_submit(a->h->rt, r, &job);
    if (rc != 0) {
        fsreq_drop(r);
        fsreq_drop(r);
        char message[120];
        snprintf(message, sizeof message, "%s: the blocking pool refused the job (%s)", fname,
                 ms_err_name(rc));
        return push_failure(L, rc, message);
    }
    fs_op *o = (fs_op *)lt->op.store;
    o->req = r;
    o->job = job;
    o->handle = handle;
    o->fname = fname;
    if (handle)
        handle->busy = true;
    int nvals = 0;
    if (anchor_idx) {
        lua_pushvalue(L, anchor_idx);
        nvals = 1;
    }
    return op_suspend(L, lt, fs_poll, fs_cancel, nvals);
}

/* ---- ms.fs ---- */

static int parse_mode(lua_State *L, int idx, const char *mode) {
    int flags;
    switch (mode[0]) {
    case 'r': flags = 0; break;
    case 'w': flags = O_CREAT | O_TRUNC; break;
    case 'a': flags = O_CREAT | O_APPEND; break;
    default: return luaL_argerror(L, idx, "mode must be r, w or a, optionally with + and x");
    }
    bool plus = false, excl = false;
    for (const char *m = mode + 1; *m; m++) {
        if (*m == '+')
            plus = true;
        else if (*m == 'x' && mode[0] == 'w')
            excl = true;
        else if (*m != 'b')
            return luaL_argerror(L, idx, "mode must be r, w or a, optionally with + and x");
    }
    flags |= plus ? O_RDWR : mode[0] == 'r' ? O_RDONLY : O_WRONLY;
    if (excl)
        flags |= O_EXCL;
    return flags;
}

/* ms.fs.open(path[, mode]) -> file | nil, err */
static int l_open(lua_State *L) {
    check_allowed(L, "ms.fs.open");
    const char *path = check_path(L, 1);
    int flags = parse_mode(L, 2, luaL_optstring(L, 2, "r"));
    ltask *lt = ltask_current(L, "ms.fs.open");
    /* Refused before the job when there is no room now (checked again
     * when the descriptor comes back: another task may have opened one). */
    char why[200];
    if (!ioh_room(agent_from_state(L), why, sizeof why)) {
        char message[300];
        snprintf(message, sizeof message, "ms.fs.open: %s", why);
        return push_failure(L, MS_E_EXHAUSTED, message);
    }
    fs_req *r = new_req(L, FS_OPEN, path);
    r->flags = flags;
    r->mode = 0666; /* less the process's umask */
    return start(L, lt, r, "ms.fs.open", NULL, 0);
}

/* What the agent's memory limit leaves, or 0 for no limit (and at least
 * 1, so that a limit already reached refuses every non-empty file). */
static size_t memory_left(agent *a) {
    if (!a || a->mem_limit == 0)
        return 0;
    size_t used = atomic_load_explicit(&a->mem_used, memory_order_relaxed);
    return a->mem_limit > used ? a->mem_limit - used : 1;
}

/* ms.fs.read_file(path) -> string | nil, err */
static int l_read_file(lua_State *L) {
    check_allowed(L, "ms.fs.read_file");
    const char *path = check_path(L, 1);
    ltask *lt = ltask_current(L, "ms.fs.read_file");
    fs_req *r = new_req(L, FS_READ_FILE, path);
    r->max_len = memory_left(lt->a);
    return start(L, lt, r, "ms.fs.read_file", NULL, 0);
}

static unsigned opt_mode(lua_State *L, int idx, unsigned def) {
    if (lua_isnoneornil(L, idx))
        return def;
    luaL_checktype(L, idx, LUA_TTABLE);
    lua_getfield(L, idx, "mode");
    unsigned mode = def;
    if (!lua_isnil(L, -1)) {
        double m = lua_tonumber(L, -1);
        if (!lua_isnumber(L, -1) || m < 0 || m > 07777 || m != (double)(unsigned)m)
            luaL_argerror(L, idx, "mode must be permission bits, 0 to 4095 (e.g. 420 for 0644)");
        mode = (unsigned)m;
    }
    lua_pop(L, 1);
    return mode;
}

/* ms.fs.write_file(path, data[, {mode=}]) -> true | nil, err: atomic (a
 * temporary file beside it, fsync, rename). */
static int l_write_file(lua_State *L) {
    check_allowed(L, "ms.fs.write_file");
    const char *path = check_path(L, 1);
    size_t len;
    const char *data = luaL_checklstring(L, 2, &len);
    unsigned mode = opt_mode(L, 3, 0);
    ltask *lt = ltask_current(L, "ms.fs.write_file");
    fs_req *r = new_req(L, FS_WRITE_FILE, path);
    r->mode = mode;
    r->data = malloc(len ? len : 1);
    if (!r->data) {
        fsreq_drop(r);
        fsreq_drop(r);
        return luaL_error(L, "ms.fs.write_file: not enough memory for %zu bytes", len);
    }
    memcpy(r->data, data, len);
    r->len = len;
    return start(L, lt, r, "ms.fs.write_file", NULL, 0);
}

static int path_call(lua_State *L, fs_kind kind, const char *fname) {
    check_allowed(L, fname);
    const char *path = check_path(L, 1);
    ltask *lt = ltask_current(L, fname);
    return start(L, lt, new_req(L, kind, path), fname, NULL, 0);
}

/* ms.fs.stat(path) -> { type, size, mode, mtime, ... } | nil, err */
static int l_stat(lua_State *L) {
    return path_call(L, FS_STAT, "ms.fs.stat");
}

/* ms.fs.list(dir) -> { names, sorted } | nil, err */
static int l_list(lua_State *L) {
    return path_call(L, FS_LIST, "ms.fs.list");
}

/* ms.fs.remove(path) -> true | nil, err: a file or an empty directory */
static int l_remove(lua_State *L) {
    return path_call(L, FS_REMOVE, "ms.fs.remove");
}

/* ms.fs.rename(from, to) -> true | nil, err */
static int l_rename(lua_State *L) {
    check_allowed(L, "ms.fs.rename");
    const char *from = check_path(L, 1);
    const char *to = check_path(L, 2);
    ltask *lt = ltask_current(L, "ms.fs.rename");
    fs_req *r = new_req(L, FS_RENAME, from);
    r->path2 = dup_or_raise(L, r, to);
    return start(L, lt, r, "ms.fs.rename", NULL, 0);
}

/* ms.fs.mkdir(path[, {parents=, mode=}]) -> true | nil, err */
static int l_mkdir(lua_State *L) {
    check_allowed(L, "ms.fs.mkdir");
    const char *path = check_path(L, 1);
    unsigned mode = opt_mode(L, 2, 0777);
    bool parents = false;
    if (lua_istable(L, 2)) {
        lua_getfield(L, 2, "parents");
        parents = lua_toboolean(L, -1);
        lua_pop(L, 1);
    }
    ltask *lt = ltask_current(L, "ms.fs.mkdir");
    fs_req *r = new_req(L, FS_MKDIR, path);
    r->mode = mode;
    r->parents = parents;
    return start(L, lt, r, "ms.fs.mkdir", NULL, 0);
}

/* ---- file handles ---- */

/* The handle at 1, open and not busy (else raises). */
static lfile *check_file(lua_State *L, const char *fname) {
    lfile *h = luaL_checkudata(L, 1, FILE_MT);
    if (!h->f)
        luaL_error(L, "%s: the file is closed", fname);
    if (h->busy)
        luaL_error(L, "%s: another task is using %s (one call at a time per file)", fname,
                   h->f->path);
    return h;
}

static fs_req *file_req(lua_State *L, lfile *h, fs_kind kind) {
    fs_req *r = new_req(L, kind, NULL);
    fsfile_ref(h->f);
    r->file = h->f;
    return r;
}

/* f:read([n]) -> up to n bytes (default 64 KiB), "" at the end | nil, err */
static int f_read(lua_State *L) {
    lfile *h = check_file(L, "file:read");
    double n = luaL_optnumber(L, 2, READ_DEFAULT);
    if (!(n >= 1 && n <= READ_MAX))
        luaL_argerror(L, 2, "n must be 1 to 64 MiB");
    ltask *lt = ltask_current(L, "file:read");
    /* Half of what the memory limit leaves: the string itself needs
     * that much again on its way into the state. */
    size_t left = memory_left(lt->a) / 2;
    if (left && n > (double)left)
        n = (double)left; /* a short read, as at the end of a file */
    fs_req *r = file_req(L, h, FS_READ);
    r->n = (size_t)n;
    return start(L, lt, r, "file:read", h, 1);
}

/* f:write(s) -> true | nil, err (all of s, or an error) */
static int f_write(lua_State *L) {
    lfile *h = check_file(L, "file:write");
    size_t len;
    const char *s = luaL_checklstring(L, 2, &len);
    ltask *lt = ltask_current(L, "file:write");
    fs_req *r = file_req(L, h, FS_WRITE);
    r->data = malloc(len ? len : 1);
    if (!r->data) {
        fsreq_drop(r);
        fsreq_drop(r);
        return luaL_error(L, "file:write: not enough memory for %zu bytes", len);
    }
    memcpy(r->data, s, len);
    r->len = len;
    return start(L, lt, r, "file:write", h, 1);
}

/* f:seek([whence[, offset]]) -> position | nil, err; as io's seek */
static int f_seek(lua_State *L) {
    static const char *const names[] = {"set", "cur", "end", NULL};
    static const int whences[] = {SEEK_SET, SEEK_CUR, SEEK_END};
    lfile *h = check_file(L, "file:seek");
    int w = luaL_checkoption(L, 2, "cur", names);
    double off = luaL_optnumber(L, 3, 0);
    if (off != (double)(int64_t)off)
        luaL_argerror(L, 3, "offset must be a whole number of bytes");
    ltask *lt = ltask_current(L, "file:seek");
    fs_req *r = file_req(L, h, FS_SEEK);
    r->whence = whences[w];
    r->offset = (int64_t)off;
    return start(L, lt, r, "file:seek", h, 1);
}

/* f:close() -> true | nil, err.  Closing a closed file does nothing. */
static int f_close(lua_State *L) {
    lfile *h = luaL_checkudata(L, 1, FILE_MT);
    if (!h->f) {
        lua_pushboolean(L, 1);
        return 1;
    }
    h = check_file(L, "file:close");
    ltask *lt = ltask_current(L, "file:close");
    fs_req *r = new_req(L, FS_CLOSE, NULL);
    /* The handle's reference moves to the request: the handle is closed
     * from now on, whatever becomes of the job. */
    r->file = h->f;
    h->f = NULL;
    ioh_closed(&h->io);
    return start(L, lt, r, "file:close", NULL, 0);
}

static int f_gc(lua_State *L) {
    lfile *h = lua_touserdata(L, 1);
    if (h)
        release_handle(h);
    return 0;
}

static int f_tostring(lua_State *L) {
    lfile *h = luaL_checkudata(L, 1, FILE_MT);
    if (h->f)
        lua_pushfstring(L, "ms.file (%s)", h->f->path);
    else
        lua_pushliteral(L, "ms.file (closed)");
    return 1;
}

/* f:path() -> the path it was opened with, or nil once closed */
static int f_path(lua_State *L) {
    lfile *h = luaL_checkudata(L, 1, FILE_MT);
    if (!h->f)
        return 0;
    lua_pushstring(L, h->f->path);
    return 1;
}

/* The file handles' metatable, built the first time the state opens a
 * file (most agents never do). */
static void push_file_mt(lua_State *L) {
    static const luaL_Reg methods[] = {{"read", f_read},   {"write", f_write}, {"seek", f_seek},
                                       {"close", f_close}, {"path", f_path},   {NULL, NULL}};
    if (!luaL_newmetatable(L, FILE_MT))
        return;
    lua_pushcfunction(L, f_gc);
    lua_setfield(L, -2, "__gc");
    lua_pushcfunction(L, f_tostring);
    lua_setfield(L, -2, "__tostring");
    lua_newtable(L);
    luaL_register(L, NULL, methods);
    lua_setfield(L, -2, "__index");
}

void lfs_push_module(lua_State *L) {
    static const luaL_Reg functions[] = {
        {"open", l_open},     {"read_file", l_read_file}, {"write_file", l_write_file},
        {"stat", l_stat},     {"list", l_list},           {"remove", l_remove},
        {"rename", l_rename}, {"mkdir", l_mkdir},         {NULL, NULL}};
    lua_createtable(L, 0, 8);
    luaL_register(L, NULL, functions);
}

void lfs_push_metrics(lua_State *L) {
    uint64_t v[FM_COUNT];
    file_metric_values(v);
    lua_createtable(L, 0, FM_COUNT);
    for (int i = 0; i < FM_COUNT; i++) {
        lua_pushnumber(L, (double)v[i]);
        lua_setfield(L, -2, file_metric_descs[i].key);
    }
    lua_setfield(L, -2, "files");
}
