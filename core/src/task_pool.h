/*
 * task_pool.h - recycled task blocks: a magazine per worker and a depot
 * per runtime.
 *
 * Every spawn allocates an ms_task and every completion frees one, often
 * on another worker than the spawner's (a stolen task).  With malloc alone
 * that free takes the lock of the arena the block came from, against the
 * spawner's own allocations: on spawn_many_local about a sixth of the time
 * went to that lock and its futex calls.  So a worker keeps the blocks it
 * frees in its own magazine (no lock) and allocates from it; full batches
 * of TASK_POOL_BATCH blocks move between magazines and the runtime's
 * depot, one lock per batch.
 *
 * Blocks are interchangeable (all sizeof(ms_task), from malloc), so a
 * worker may recycle a task of any runtime.  Threads that are not workers
 * (the driver, the blocking pool, the caller of ms_block_on) use malloc
 * and free directly.  Memory held is bounded: at most 2 * TASK_POOL_BATCH
 * blocks per worker and TASK_POOL_DEPOT batches per runtime (see
 * docs/scheduler.md, "Memory"); the rest goes back to free().
 *
 * Under AddressSanitizer the pool is bypassed, so that a use of a task
 * after it was freed is still caught.
 */
#ifndef MS_TASK_POOL_H
#define MS_TASK_POOL_H

#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>

struct ms_task;

#define TASK_POOL_BATCH 128u
#define TASK_POOL_DEPOT 64u

/* A worker's own blocks, linked through ms_task.next, in two chains (as
 * in Bonwick's magazines, so that a worker alternating between taking and
 * giving at a boundary does not go to the depot each time): the loaded
 * one, with 0..TASK_POOL_BATCH blocks, and a spare, empty or full.
 * Owner-only. */
typedef struct task_mag {
    struct ms_task *loaded, *spare;
    uint32_t nloaded;
    bool spare_full;
} task_mag;

/* Batches of exactly TASK_POOL_BATCH blocks each, under lock. */
typedef struct task_depot {
    pthread_mutex_t lock;
    struct ms_task *batches[TASK_POOL_DEPOT];
    uint32_t n;
} task_depot;

void task_depot_init(task_depot *d);
/* Frees every block the depot holds; no worker may use it any more. */
void task_depot_destroy(task_depot *d);

/* A recycled block (contents undefined), or NULL: allocate one. */
struct ms_task *task_pool_get(task_mag *m, task_depot *d);
/* Keeps t for reuse; false when the pool is full (the caller frees it). */
bool task_pool_put(task_mag *m, task_depot *d, struct ms_task *t);
/* A worker leaving: its blocks go to the depot, or to free(). */
void task_pool_flush(task_mag *m, task_depot *d);

#endif
