/*
 * unwind_jit.c - LuaJIT's unwind tables for machine code, kept in a hash
 * table of our own instead of libgcc's list: ms-host defines
 * __register_frame, __deregister_frame and _Unwind_Find_FDE, which the
 * dynamic linker binds before libgcc's (the executable comes first in the
 * lookup scope; libluajit and libgcc's unwinder call them through the PLT).
 *
 * Why: LuaJIT registers an unwind table (one CIE, one FDE) for every 64 KB
 * machine-code area of every state, and raises every Lua error and every
 * trace abort as an exception.  Debian 12's libgcc (GCC 12) keeps
 * registered tables in one sorted linked list behind one mutex and walks
 * it for every frame of every unwind, so with N states holding machine
 * code each error costs O(N) under a process-wide lock: measured 3.2 us
 * per pcall(error) with 1 JIT state, 96 us with 2,000, 4.5 ms with 10,000
 * (docs/host.md, "The JIT and its window").  Here a lookup is a hash probe
 * by 64 KB block, under a read lock that lookups share.
 *
 * What is taken over: a table that parses as one CIE with augmentation
 * "zPR" or "zR" (any personality encoding, FDE pointers pcrel|sdata4 or
 * absptr) followed by FDEs, which is what LuaJIT's lj_err_register_mcode
 * writes.  Anything else, and any table this file does not hold, goes to
 * libgcc's functions (looked up with dlsym(RTLD_NEXT)), so the program's
 * own unwinding is untouched.  The memory of a registered table stays the
 * caller's (LuaJIT keeps it at the start of the area until it
 * deregisters), as with libgcc.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#define API __attribute__((visibility("default")))

/* libgcc's (unwind-dw2-fde.h): the bases an FDE's encodings are relative
 * to; func is the start of the code the FDE covers. */
struct dwarf_eh_bases {
    void *tbase;
    void *dbase;
    void *func;
};

typedef void reg_fn(const void *);
typedef const void *find_fn(void *, struct dwarf_eh_bases *);

/* One FDE's code range. */
typedef struct jit_range {
    uintptr_t lo, hi;         /* [lo, hi) */
    const uint8_t *fde;       /* its length field */
    const void *table;        /* what was registered (the key to deregister) */
    struct jit_range *next;   /* in its 64 KB block's chain */
} jit_range;

#define BLOCK_SHIFT 16
#define NBUCKETS 65536u

/* Writers (register, deregister) take the lock exclusively, lookups
 * shared.  Each range is linked into the chain of every 64 KB block it
 * overlaps (one node per block). */
static pthread_rwlock_t lock = PTHREAD_RWLOCK_INITIALIZER;
static jit_range *buckets[NBUCKETS];

static pthread_once_t next_once = PTHREAD_ONCE_INIT;
static reg_fn *next_register, *next_deregister;
static find_fn *next_find;

static void find_next(void) {
    next_register = (reg_fn *)dlsym(RTLD_NEXT, "__register_frame");
    next_deregister = (reg_fn *)dlsym(RTLD_NEXT, "__deregister_frame");
    next_find = (find_fn *)dlsym(RTLD_NEXT, "_Unwind_Find_FDE");
}

static size_t bucket_of(uintptr_t block) {
    return (size_t)((block * 0x9E3779B97F4A7C15ull) >> 48) & (NBUCKETS - 1);
}

static uint32_t rd32(const uint8_t *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

static const uint8_t *skip_leb(const uint8_t *p, const uint8_t *end) {
    while (p < end && (*p & 0x80))
        p++;
    return p < end ? p + 1 : NULL;
}

/* The size of a value with DWARF pointer encoding enc (its low 4 bits);
 * 0 for the ones this file does not read. */
static size_t enc_size(uint8_t enc) {
    switch (enc & 0x0f) {
    case 0x00: return sizeof(void *); /* absptr */
    case 0x03: case 0x0b: return 4;   /* udata4, sdata4 */
    case 0x04: case 0x0c: return 8;   /* udata8, sdata8 */
    default: return 0;
    }
}

/* Reads a pointer with encoding enc at p (pcrel and absolute only). */
static bool read_ptr(const uint8_t *p, uint8_t enc, uintptr_t *out) {
    uintptr_t v;
    switch (enc & 0x0f) {
    case 0x00: memcpy(&v, p, sizeof v); break;
    case 0x03: v = rd32(p); break;
    case 0x0b: v = (uintptr_t)(intptr_t)(int32_t)rd32(p); break;
    case 0x04: case 0x0c: memcpy(&v, p, 8); break;
    default: return false;
    }
    switch (enc & 0x70) {
    case 0x00: break;
    case 0x10: v += (uintptr_t)p; break;
    default: return false;
    }
    *out = v;
    return true;
}

/* The FDE pointer encoding of the CIE at cie, or -1 when it is not one
 * this file reads (then libgcc keeps the table). */
static int cie_fde_encoding(const uint8_t *cie) {
    uint32_t len = rd32(cie);
    if (len == 0 || len == 0xffffffffu || rd32(cie + 4) != 0)
        return -1;
    const uint8_t *end = cie + 4 + len, *p = cie + 8;
    if (*p != 1 && *p != 3)
        return -1; /* version */
    const char *aug = (const char *)++p;
    size_t auglen = strnlen(aug, (size_t)(end - p));
    if (aug[0] != 'z' || (strcmp(aug, "zPR") != 0 && strcmp(aug, "zR") != 0))
        return -1;
    p += auglen + 1;
    if (!(p = skip_leb(p, end)) || !(p = skip_leb(p, end))) /* code, data align */
        return -1;
    p = cie[8] == 1 ? p + 1 : skip_leb(p, end);              /* return register */
    if (!p || !(p = skip_leb(p, end)))                       /* augmentation length */
        return -1;
    for (const char *a = aug + 1; *a && p < end; a++) {
        if (*a == 'P') {
            size_t n = enc_size(*p);
            if (!n)
                return -1;
            p += 1 + n;
        } else if (*a == 'R') {
            return enc_size(*p) ? *p : -1;
        }
    }
    return -1;
}

/* Nodes allocated for the table take() is linking, before it took the
 * lock: nothing that allocates runs under the lock, because an allocation
 * may unwind (a fault injector's backtrace, a profiler's) and the
 * unwinder calls _Unwind_Find_FDE, which takes the lock.  Under the lock,
 * held exclusively. */
static jit_range *spare;

/* The nodes proto's range needs: one per 64 KB block it overlaps. */
static size_t count_range(const jit_range *proto) {
    return (size_t)(((proto->hi - 1) >> BLOCK_SHIFT) - (proto->lo >> BLOCK_SHIFT) + 1);
}

static void link_range(const jit_range *proto) {
    for (uintptr_t b = proto->lo >> BLOCK_SHIFT; b <= (proto->hi - 1) >> BLOCK_SHIFT; b++) {
        jit_range *r = spare; /* counted before: never NULL here */
        spare = r->next;
        *r = *proto;
        size_t k = bucket_of(b);
        r->next = buckets[k];
        buckets[k] = r;
    }
}

/* Unlinks the nodes of proto's range that belong to its table; how many. */
static size_t unlink_range(const jit_range *proto) {
    size_t n = 0;
    for (uintptr_t b = proto->lo >> BLOCK_SHIFT; b <= (proto->hi - 1) >> BLOCK_SHIFT; b++) {
        for (jit_range **pp = &buckets[bucket_of(b)]; *pp;) {
            jit_range *r = *pp;
            if (r->table == proto->table && r->lo == proto->lo) {
                *pp = r->next;
                free(r);
                n++;
            } else {
                pp = &r->next;
            }
        }
    }
    return n;
}

/* Calls f on every FDE of the table at begin that belongs to its first
 * CIE; false (f never called) when that CIE is not one this file reads.
 * It reads only the table; f may need the lock (link_one, unlink_range). */
static bool each_fde(const uint8_t *begin, size_t (*f)(const jit_range *), size_t *count) {
    int enc = cie_fde_encoding(begin);
    if (enc < 0)
        return false;
    const uint8_t *p = begin + 4 + rd32(begin);
    uint32_t len;
    for (; (len = rd32(p)) != 0 && len != 0xffffffffu; p += 4 + len) {
        uintptr_t lo, range;
        if (rd32(p + 4) == 0 || p + 4 - rd32(p + 4) != begin)
            continue; /* another CIE, or an FDE of another one */
        if (!read_ptr(p + 8, (uint8_t)enc, &lo) ||
            !read_ptr(p + 8 + enc_size((uint8_t)enc), (uint8_t)(enc & 0x0f), &range) ||
            range == 0)
            continue;
        jit_range r = {.lo = lo, .hi = lo + range, .fde = p, .table = begin};
        *count += f(&r);
    }
    return true;
}

static size_t link_one(const jit_range *r) {
    link_range(r);
    return 1;
}

/* Indexes the table's FDEs; false when libgcc should have it instead: a
 * table this file does not read, or one whose nodes the heap refused. */
static bool take(const void *begin) {
    size_t need = 0;
    if (!each_fde(begin, count_range, &need) || need == 0)
        return false;
    jit_range *mine = NULL;
    for (size_t i = 0; i < need; i++) {
        jit_range *r = malloc(sizeof *r);
        if (!r) {
            while (mine) {
                jit_range *next = mine->next;
                free(mine);
                mine = next;
            }
            return false;
        }
        r->next = mine;
        mine = r;
    }
    size_t n = 0;
    pthread_rwlock_wrlock(&lock);
    spare = mine;
    each_fde(begin, link_one, &n);
    spare = NULL;
    pthread_rwlock_unlock(&lock);
    return n > 0;
}

/* Unindexes the table (its memory is still the caller's, unchanged);
 * false when this file did not hold it. */
static bool drop(const void *begin) {
    size_t n = 0;
    pthread_rwlock_wrlock(&lock);
    bool ours = each_fde(begin, unlink_range, &n);
    pthread_rwlock_unlock(&lock);
    return ours && n > 0;
}

API void __register_frame(const void *begin) {
    if (take(begin))
        return;
    pthread_once(&next_once, find_next);
    if (next_register)
        next_register(begin);
}

API void __deregister_frame(const void *begin) {
    if (drop(begin))
        return;
    pthread_once(&next_once, find_next);
    if (next_deregister)
        next_deregister(begin);
}

API const void *_Unwind_Find_FDE(void *pc, struct dwarf_eh_bases *bases) {
    uintptr_t a = (uintptr_t)pc;
    const uint8_t *fde = NULL;
    uintptr_t lo = 0;
    /* Refused (this thread holds the lock to write: an unwind from inside
     * take or drop): not one of ours, then, as far as this lookup goes. */
    if (pthread_rwlock_rdlock(&lock) != 0)
        goto others;
    for (jit_range *r = buckets[bucket_of(a >> BLOCK_SHIFT)]; r; r = r->next) {
        if (r->lo <= a && a < r->hi) {
            fde = r->fde;
            lo = r->lo;
            break;
        }
    }
    pthread_rwlock_unlock(&lock);
    if (fde) {
        bases->tbase = NULL;
        bases->dbase = NULL;
        bases->func = (void *)lo;
        return fde;
    }
others:
    pthread_once(&next_once, find_next);
    return next_find ? next_find(pc, bases) : NULL;
}
