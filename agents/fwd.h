/*
 * fwd.h - the agents layer's types, declared so that its headers can name
 * each other's types without including each other (no include cycles).
 * Each type is defined in the header of the file that owns it.
 */
#ifndef MS_AGENTS_FWD_H
#define MS_AGENTS_FWD_H

typedef struct host host;             /* host.h */
typedef struct agent agent;           /* agent.h */
typedef struct ltask ltask;           /* ltask.h */
typedef struct lop lop;               /* ops.h */
typedef struct lint lint;             /* ops.h */
typedef struct reply_slot reply_slot; /* ops.c (opaque) */
typedef struct msg msg;               /* mail.h */
typedef struct xfer xfer;             /* xfer.h */
typedef struct lchan lchan;           /* lchan.c (opaque) */
typedef struct ioh ioh;               /* iohandle.h */
typedef struct lsock lsock;           /* lms_net.c (opaque) */

#endif
