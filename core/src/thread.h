/*
 * thread.h - starting runtime threads: name, stack size and hooks.
 */
#ifndef MS_THREAD_H
#define MS_THREAD_H

#include <pthread.h>
#include <stdbool.h>

#include "ms.h"

/* Linux thread names hold 15 characters; longer names are cut for the OS
 * but hooks get the whole name. */
#define THR_NAME_MAX 32

typedef struct thr_start {
    const ms_config *cfg;       /* stack size and hooks */
    char name[THR_NAME_MAX];
    void *(*fn)(void *arg);
    void *arg;
} thr_start;

/* Starts a thread running fn(arg) named `name` with the configured stack
 * size; the start hook runs first on the new thread.  fn must call
 * thr_stop_hook before it signals its exit.  detached: not joinable. */
int thr_spawn(const ms_config *cfg, const char *name, void *(*fn)(void *), void *arg,
              bool detached, pthread_t *tid, ms_error *err);

void thr_stop_hook(const ms_config *cfg, const char *name);

/* The driver thread takes back the signals every runtime thread starts
 * with blocked (thread.c). */
void thr_unblock_signals(void);

#endif
