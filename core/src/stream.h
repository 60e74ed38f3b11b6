/*
 * stream.h - TCP and Unix domain streams on the driver loop.
 *
 * A stream's uv handle lives on the driver thread; the task side and the
 * driver meet under the stream's lock:
 *
 *   read side:  the driver reads ahead into rbuf (at most
 *               MS_STREAM_READ_BUFFER bytes) and stops reading from the
 *               socket when it is full; the task copies out from the front
 *               and asks the driver to resume once half is free.  Only the
 *               driver moves data inside rbuf (compaction in alloc_cb), and
 *               only the driver writes past rstart + rlen, so it may read
 *               into that space without the lock.
 *   write side: the task appends to wbuf while wbuf plus the bytes in
 *               flight stay under MS_STREAM_WRITE_BUFFER (else it waits:
 *               back-pressure); the driver takes wbuf whole into one
 *               uv_write and counts it in flight until the write callback.
 *
 * One reader task and one writer task at a time (rwaker, wwaker).
 */
#ifndef MS_STREAM_H
#define MS_STREAM_H

#include <pthread.h>
#include <stdbool.h>
#include <uv.h>

#include "driver.h"
#include "ms.h"

struct ms_stream {
    driver *d;                  /* immutable */
    union {
        uv_stream_t stream;
        uv_tcp_t tcp;
        uv_pipe_t pipe;
    } h;                        /* driver thread only */
    bool handle_live;           /* driver thread only */
    /* The driver's stop closed the handle (its walk, stream_close_at_stop)
     * while the stream still had an owner somewhere; walk_done: that close
     * completed; release: the owner let go meanwhile (stream_close_now),
     * so the close callback frees.  Driver thread, or after the driver
     * finished. */
    bool walk_closed, walk_done, release;
    /* The socket's descriptor once open, -1 before: written by the driver
     * before the stream is handed to a task (under the listener's or the
     * connect request's lock), immutable after.  Tasks use it for
     * getsockname/getpeername/setsockopt only, never to read or write. */
    int fd;
    bool reading;               /* driver thread only */
    drv_op op_read, op_flush, op_shutdown, op_close;
    struct ms_stream *next_accepted; /* listener lock */

    pthread_mutex_t lock;
    /* Everything below is under lock. */
    char *rbuf;
    size_t rstart, rlen;
    bool read_paused;           /* the driver stopped reading: rbuf full */
    bool eof;
    int read_err;               /* uv error, 0 if none */
    ms_waker rwaker;
    char *wbuf;
    size_t wlen, wcap;
    size_t inflight;            /* bytes in uv_write requests */
    int write_err;
    bool shutdown_requested, shutdown_done;
    int shutdown_rc;
    ms_waker wwaker;
};

/* Driver thread: a stream for a handle to be initialised by the caller
 * (accept or connect).  NULL on allocation failure. */
ms_stream *stream_new(driver *d);
/* Driver thread: starts reading ahead. */
void stream_start_reading(ms_stream *s);
/* Driver thread (or after the driver finished): closes the handle; the
 * memory goes in the close callback, or now if the driver's stop already
 * closed it. */
void stream_close_now(ms_stream *s);
/* Driver thread, at its stop: closes a stream's handle whose owner may
 * still let go of it later (stream_close_now then frees). */
void stream_close_at_stop(uv_handle_t *h);
/* Frees a stream whose handle was never initialised. */
void stream_free_memory(ms_stream *s);

/* Driver thread, at its stop (process.c): closes a child's handle, and
 * frees the process if its owner has already let go (it was waiting for
 * the child's exit to close it). */
void process_close_at_stop(uv_handle_t *h);

/* Maps a libuv error to an ms_err code and sets err's message. */
int stream_uv_error(ms_error *err, int uverr, const char *what);

#endif
