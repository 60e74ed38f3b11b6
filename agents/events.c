/*
 * events.c - the event bus: ms.events.publish(topic, value) and
 * ms.events.subscribe(topic[, capacity]) -> channel.
 *
 * A subscription is a bounded channel.  Publishing encodes the value once,
 * then offers a copy to each subscriber of the topic (and of "*") with a
 * non-blocking send: a subscriber whose channel is full loses that event,
 * which is counted (per subscription and in total), so a slow subscriber
 * never holds up a publisher.  A subscription ends when its channel is
 * closed (by its owner) or when nobody but the bus holds it any more.
 * The host publishes its own events under "ms.*" topics (agent.started,
 * agent.exited, shutdown, ...).
 *
 * The table is one mutex-protected list of subscriptions: publishing is
 * O(subscriptions), fine for the tens to hundreds an operator creates.
 */
#include <lauxlib.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "events.h"
#include "hold.h"
#include "lhandle.h"
#include "ms.h"
#include "xfer.h"

typedef struct sub {
    struct sub *next;
    char *topic;                /* "*" matches every topic */
    ms_chan *ch;                /* the bus's reference */
    uint64_t delivered, dropped;
} sub;

static pthread_mutex_t bus_lock = PTHREAD_MUTEX_INITIALIZER;
static sub *subs;               /* under bus_lock */
/* subs != NULL, written under bus_lock whenever subs changes, read
 * without it: the host publishes an event at every agent start and exit,
 * and with no subscriber that must not cost a lock. */
static _Atomic bool have_subs;
static _Atomic uint64_t published, delivered, dropped;

static xfer *xfer_copy(const xfer *x) {
    xfer *c = xfer_new();
    if (!c)
        return NULL;
    if (x->len > c->cap) {
        c->buf = malloc(x->len);
        if (!c->buf) {
            c->buf = c->inline_buf;
            xfer_free(c);
            return NULL;
        }
        c->cap = x->len;
    }
    c->handles = x->nhandles ? malloc(x->nhandles * sizeof *c->handles) : NULL;
    if (x->nhandles && !c->handles) {
        xfer_free(c);
        return NULL;
    }
    memcpy(c->buf, x->buf, x->len);
    c->len = x->len;
    for (uint32_t i = 0; i < x->nhandles; i++) {
        c->handles[i] = x->handles[i];
        lh_ref_handle(x->handles[i].type, x->handles[i].ptr);
    }
    c->nhandles = c->hcap = x->nhandles;
    return c;
}

/* Offers body (consumed) to every matching subscription. */
static void bus_publish(const char *topic, xfer *body) {
    atomic_fetch_add(&published, 1);
    pthread_mutex_lock(&bus_lock);
    for (sub **pp = &subs; *pp;) {
        sub *s = *pp;
        if (ms_chan_is_closed(s->ch)) {
            *pp = s->next;
            ms_chan_unref(s->ch);
            free(s->topic);
            free(s);
            continue;
        }
        pp = &s->next;
        if (strcmp(s->topic, "*") != 0 && strcmp(s->topic, topic) != 0)
            continue;
        xfer *copy = xfer_copy(body);
        if (copy && ms_chan_try_send(s->ch, copy) == 0) {
            s->delivered++;
            atomic_fetch_add(&delivered, 1);
        } else {
            xfer_free(copy);
            s->dropped++;
            atomic_fetch_add(&dropped, 1);
        }
    }
    atomic_store_explicit(&have_subs, subs != NULL, memory_order_release);
    pthread_mutex_unlock(&bus_lock);
    xfer_free(body);
}

/* An event value { topic =, at =, ... } built by the host without a Lua
 * state: fields are string/number pairs. */
void events_publish_host(const char *topic, const char *const *keys, const char *const *strs,
                         const double *nums, int n) {
    if (!atomic_load_explicit(&have_subs, memory_order_acquire))
        return;
    xfer *x = xfer_new();
    if (!x)
        return;
    uint32_t pairs = (uint32_t)n + 2;
    xfer_put_table(x, pairs);
    xfer_put_str(x, "topic");
    xfer_put_str(x, topic);
    xfer_put_str(x, "at");
    xfer_put_num(x, ms_now_ns() / 1e9);
    for (int i = 0; i < n; i++) {
        xfer_put_str(x, keys[i]);
        if (strs[i])
            xfer_put_str(x, strs[i]);
        else
            xfer_put_num(x, nums[i]);
    }
    if (x->failed) { /* out of memory: the event is lost, as a full queue would lose it */
        xfer_free(x);
        return;
    }
    bus_publish(topic, x);
}

static void release_xfer(void *x) {
    xfer_free(x);
}

static int ev_publish(lua_State *L) {
    const char *topic = luaL_checkstring(L, 1);
    luaL_checkany(L, 2);
    char err[300];
    xfer *x = xfer_new();
    if (!x)
        return luaL_error(L, "ms.events.publish: out of memory");
    hold_push(x, release_xfer);
    bool encoded = xfer_encode(L, 2, x, "value", err, sizeof err);
    hold_pop(x);
    if (!encoded) {
        xfer_free(x);
        return luaL_error(L, "ms.events.publish: %s", err);
    }
    bus_publish(topic, x);
    return 0;
}

static void drop_xfer(void *v) {
    xfer_free(v);
}

static int ev_subscribe(lua_State *L) {
    const char *topic = luaL_checkstring(L, 1);
    double cap = luaL_optnumber(L, 2, 64);
    if (cap < 1 || cap > 1e7 || cap != (double)(size_t)cap)
        return luaL_argerror(L, 2, "capacity must be a whole number from 1 to 10000000");
    sub *s = calloc(1, sizeof *s);
    ms_chan *ch = NULL;
    if (!s || !(s->topic = strdup(topic)) || ms_chan_new((size_t)cap, drop_xfer, &ch) != 0) {
        if (s)
            free(s->topic);
        free(s);
        return luaL_error(L, "ms.events.subscribe: out of memory");
    }
    s->ch = ch; /* the creation reference is the bus's */
    pthread_mutex_lock(&bus_lock);
    s->next = subs;
    subs = s;
    atomic_store_explicit(&have_subs, true, memory_order_release);
    pthread_mutex_unlock(&bus_lock);
    lh_push_handle(L, XH_CHAN, ms_chan_ref(ch));
    return 1;
}

/* One subscription's row, copied under bus_lock; the topic follows it. */
typedef struct sub_row {
    uint64_t queued, delivered, dropped;
    size_t topic_len;
} sub_row;

/* Copies every subscription's row into buf (cap bytes) under bus_lock;
 * returns the bytes needed (nothing copied when that is more than cap). */
static size_t copy_rows(char *buf, size_t cap, int *n) {
    pthread_mutex_lock(&bus_lock);
    size_t need = 0;
    int count = 0;
    for (sub *s = subs; s; s = s->next, count++)
        need += sizeof(sub_row) + strlen(s->topic) + 1;
    if (need <= cap) {
        char *p = buf;
        for (sub *s = subs; s; s = s->next) {
            sub_row r = {ms_chan_len(s->ch), s->delivered, s->dropped, strlen(s->topic)};
            memcpy(p, &r, sizeof r);
            memcpy(p + sizeof r, s->topic, r.topic_len + 1);
            p += sizeof r + r.topic_len + 1;
        }
        *n = count;
    }
    pthread_mutex_unlock(&bus_lock);
    return need;
}

/* ms.events.stats() -> { published, delivered, dropped, subscriptions =
 * { { topic, queued, delivered, dropped }, ... } }.  The rows are copied
 * under the lock into a userdata made before it (so that a memory error
 * leaves nothing behind), and the tables are built after it. */
static int ev_stats(lua_State *L) {
    int n = 0;
    size_t cap = copy_rows(NULL, 0, &n);
    char *buf;
    for (;;) {
        buf = lua_newuserdata(L, cap ? cap : 1);
        size_t need = copy_rows(buf, cap, &n);
        if (need <= cap)
            break;
        lua_pop(L, 1); /* more subscriptions meanwhile: size again */
        cap = need;
    }
    int ud = lua_gettop(L);
    lua_createtable(L, 0, 4);
    lua_pushnumber(L, (double)atomic_load(&published));
    lua_setfield(L, -2, "published");
    lua_pushnumber(L, (double)atomic_load(&delivered));
    lua_setfield(L, -2, "delivered");
    lua_pushnumber(L, (double)atomic_load(&dropped));
    lua_setfield(L, -2, "dropped");
    lua_createtable(L, n, 0);
    const char *p = buf;
    for (int i = 1; i <= n; i++) {
        sub_row r;
        memcpy(&r, p, sizeof r);
        lua_createtable(L, 0, 4);
        lua_pushlstring(L, p + sizeof r, r.topic_len);
        lua_setfield(L, -2, "topic");
        lua_pushnumber(L, (double)r.queued);
        lua_setfield(L, -2, "queued");
        lua_pushnumber(L, (double)r.delivered);
        lua_setfield(L, -2, "delivered");
        lua_pushnumber(L, (double)r.dropped);
        lua_setfield(L, -2, "dropped");
        lua_rawseti(L, -2, i);
        p += sizeof r + r.topic_len + 1;
    }
    lua_setfield(L, -2, "subscriptions");
    lua_remove(L, ud);
    return 1;
}

void events_push_module(lua_State *L) {
    static const luaL_Reg fns[] = {
        {"publish", ev_publish}, {"subscribe", ev_subscribe}, {"stats", ev_stats}, {NULL, NULL}};
    lua_createtable(L, 0, 3);
    luaL_register(L, NULL, fns);
}

void events_shutdown(void) {
    pthread_mutex_lock(&bus_lock);
    sub *s = subs;
    subs = NULL;
    atomic_store_explicit(&have_subs, false, memory_order_release);
    pthread_mutex_unlock(&bus_lock);
    while (s) {
        sub *next = s->next;
        ms_chan_unref(s->ch);
        free(s->topic);
        free(s);
        s = next;
    }
}
