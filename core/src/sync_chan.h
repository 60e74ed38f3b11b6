/*
 * sync_chan.h - what other sync modules may use of the channel beyond
 * ms.h.
 */
#ifndef MS_SYNC_CHAN_H
#define MS_SYNC_CHAN_H

#include "ms.h"

/* Grows the channel's ring so that n more values fit without allocating:
 * afterwards, sends and hand-overs of up to n values in total (while the
 * buffer is not drained) cannot fail with MS_E_NO_MEMORY.  0 or
 * MS_E_NO_MEMORY. */
int chan_reserve_room(ms_chan *ch, size_t n);

#endif
