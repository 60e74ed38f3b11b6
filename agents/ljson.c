/*
 * ljson.c - ms.json.encode and ms.json.decode (docs/json.md).
 *
 * Encoding walks the Lua value in C and writes the text into a buffer
 * that lives in a userdata, so its memory is the agent's (the agent's
 * memory limit applies, and a raise half-way leaks nothing).  The value
 * rules are those of messages (xfer.c): plain tables, strings, numbers,
 * booleans; no functions, userdata, metatables or cycles.  A table with a
 * metatable is refused before anything of it is read, so hostile
 * metamethods (a raising __index, __pairs or __tostring) never run: every
 * read is raw.  Nesting is bounded (LJSON_MAX_DEPTH), so a deep value
 * cannot overflow the C stack.
 *
 * Decoding parses with cJSON.  cJSON cannot carry a NUL byte in a string,
 * mallocs outside the agent's memory limit, and only says where it
 * stopped.  So a first pass over the text (prescan) refuses what cJSON
 * would get silently wrong (\u0000, raw control bytes in strings), bounds
 * the nesting, and counts the values, so that a text whose tree would
 * need more C memory than the agent's limit leaves is refused before
 * cJSON allocates it.  The tree is owned by a userdata with a finalizer
 * while it is turned into Lua values, so a memory error on the way frees
 * it.
 */
#include <cjson/cJSON.h>
#include <lauxlib.h>
#include <math.h>
#include <stdbool.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "agent.h"
#include "lerr.h"
#include "ljson.h"
#include "ms.h"

/* ---- paths: where in the value a problem is ---- */

typedef struct jstep {
    const char *key;            /* NULL: an array index */
    size_t klen;
    double index;
} jstep;

/* The path (value.items[3].f) of the first depth steps, into buf. */
static void path_render(const jstep *steps, int depth, char *buf, size_t size) {
    size_t n = (size_t)snprintf(buf, size, "value");
    for (int i = 0; i < depth && n + 1 < size; i++) {
        const jstep *s = &steps[i];
        if (!s->key) {
            n += (size_t)snprintf(buf + n, size - n, "[%.0f]", s->index);
            continue;
        }
        bool ident = s->klen > 0 && s->klen <= 40 && !(s->key[0] >= '0' && s->key[0] <= '9');
        for (size_t k = 0; ident && k < s->klen; k++) {
            char c = s->key[k];
            ident = (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') ||
                    c == '_';
        }
        if (ident)
            n += (size_t)snprintf(buf + n, size - n, ".%.*s", (int)s->klen, s->key);
        else
            n += (size_t)snprintf(buf + n, size - n, "[\"%.*s%s\"]",
                                  (int)(s->klen > 24 ? 24 : s->klen), s->key,
                                  s->klen > 24 ? "..." : "");
    }
    if (n >= size && size > 4)
        memcpy(buf + size - 4, "...", 4);
}

/* ---- the encoder's output buffer: a userdata at a fixed stack slot ---- */

typedef struct jbuf {
    lua_State *L;
    int slot;
    char *p;
    size_t len, cap;
} jbuf;

static void jb_init(jbuf *b, lua_State *L) {
    b->L = L;
    b->cap = 256;
    b->len = 0;
    b->p = lua_newuserdata(L, b->cap);
    b->slot = lua_gettop(L);
}

static void jb_reserve(jbuf *b, size_t need) {
    if (b->cap - b->len >= need)
        return;
    size_t cap = b->cap;
    while (cap - b->len < need) {
        if (cap > ((size_t)1 << 31))
            luaL_error(b->L, "ms.json.encode: the text would be longer than 2 GiB");
        cap *= 2;
    }
    char *p = lua_newuserdata(b->L, cap); /* may raise: the old buffer is still anchored */
    memcpy(p, b->p, b->len);
    lua_replace(b->L, b->slot);
    b->p = p;
    b->cap = cap;
}

static void jb_add(jbuf *b, const char *s, size_t n) {
    jb_reserve(b, n);
    memcpy(b->p + b->len, s, n);
    b->len += n;
}

static void jb_char(jbuf *b, char c) {
    jb_reserve(b, 1);
    b->p[b->len++] = c;
}

/* ---- encoding ---- */

typedef struct jenc {
    lua_State *L;
    jbuf b;
    int depth;
    bool empty_array;           /* opts.empty_table == "array" */
    bool sort_keys;
    char err[520];              /* the first problem, with its path */
    char path[256];
    jstep steps[LJSON_MAX_DEPTH + 1];
    const void *open[LJSON_MAX_DEPTH + 1]; /* the tables on the path, for cycles */
} jenc;

/* The encoder recurses once per level of nesting (up to LJSON_MAX_DEPTH
 * on a worker's stack, which a profile may make 1 MiB): whatever needs a
 * buffer lives in a function of its own, kept out of the recursive
 * frames. */
#define COLD __attribute__((noinline, cold))
#define LEAF __attribute__((noinline))

COLD static bool fail(jenc *e, const char *fmt, const char *detail) {
    path_render(e->steps, e->depth, e->path, sizeof e->path);
    char what[240];
    snprintf(what, sizeof what, fmt, detail);
    snprintf(e->err, sizeof e->err, "%s: %s", e->path, what);
    return false;
}

/* The length of the valid UTF-8 sequence at s (at most n bytes), or 0. */
static size_t utf8_len(const unsigned char *s, size_t n) {
    unsigned c = s[0];
    size_t len;
    unsigned cp;
    if (c < 0x80)
        return 1;
    if (c >= 0xc2 && c <= 0xdf) {
        len = 2;
        cp = c & 0x1f;
    } else if (c >= 0xe0 && c <= 0xef) {
        len = 3;
        cp = c & 0x0f;
    } else if (c >= 0xf0 && c <= 0xf4) {
        len = 4;
        cp = c & 0x07;
    } else {
        return 0;
    }
    if (n < len)
        return 0;
    for (size_t i = 1; i < len; i++) {
        if ((s[i] & 0xc0) != 0x80)
            return 0;
        cp = (cp << 6) | (s[i] & 0x3f);
    }
    if ((len == 3 && (cp < 0x800 || (cp >= 0xd800 && cp <= 0xdfff))) ||
        (len == 4 && (cp < 0x10000 || cp > 0x10ffff)))
        return 0;
    return len;
}

LEAF static bool put_string(jenc *e, const char *s, size_t len) {
    static const char hex[] = "0123456789abcdef";
    const unsigned char *u = (const unsigned char *)s;
    jb_char(&e->b, '"');
    size_t i = 0;
    while (i < len) {
        size_t run = i;
        while (run < len && u[run] >= 0x20 && u[run] < 0x80 && u[run] != '"' && u[run] != '\\')
            run++;
        if (run > i) {
            jb_add(&e->b, s + i, run - i);
            i = run;
            continue;
        }
        unsigned c = u[i];
        if (c >= 0x80) {
            size_t n = utf8_len(u + i, len - i);
            if (n == 0) {
                char at[48];
                snprintf(at, sizeof at, "%zu", i + 1);
                return fail(e, "a string that is not valid UTF-8 (at byte %s); JSON text is UTF-8",
                            at);
            }
            jb_add(&e->b, s + i, n);
            i += n;
            continue;
        }
        char esc[6] = {'\\', 0};
        size_t n = 2;
        switch (c) {
        case '"': esc[1] = '"'; break;
        case '\\': esc[1] = '\\'; break;
        case '\n': esc[1] = 'n'; break;
        case '\r': esc[1] = 'r'; break;
        case '\t': esc[1] = 't'; break;
        case '\b': esc[1] = 'b'; break;
        case '\f': esc[1] = 'f'; break;
        default:
            memcpy(esc, "\\u00", 4);
            jb_add(&e->b, esc, 4);
            esc[0] = hex[c >> 4];
            esc[1] = hex[c & 15];
            break;
        }
        jb_add(&e->b, esc, n);
        i++;
    }
    jb_char(&e->b, '"');
    return true;
}

LEAF static bool put_number(jenc *e, double x) {
    if (x != x)
        return fail(e, "%s cannot be encoded (JSON has no NaN or infinity)", "NaN");
    if (isinf(x))
        return fail(e, "%s cannot be encoded (JSON has no NaN or infinity)",
                    x > 0 ? "inf" : "-inf");
    char tmp[40];
    int n;
    if (x == floor(x) && fabs(x) < 9007199254740992.0) {
        n = snprintf(tmp, sizeof tmp, "%.0f", x);
    } else {
        /* The shortest of %.15g..%.17g that reads back as x. */
        for (int prec = 15;; prec++) {
            n = snprintf(tmp, sizeof tmp, "%.*g", prec, x);
            if (prec == 17 || strtod(tmp, NULL) == x)
                break;
        }
    }
    /* An agent may have set a locale whose decimal point is a comma. */
    for (int i = 0; i < n; i++)
        if (tmp[i] == ',')
            tmp[i] = '.';
    jb_add(&e->b, tmp, (size_t)n);
    return true;
}

static bool enc_value(jenc *e, int idx);

COLD static bool fail_key(jenc *e, double k) {
    char key[40];
    snprintf(key, sizeof key, "%.14g", k);
    return fail(e, "a table with the key %s (JSON arrays are indexed 1..n, object keys are "
                   "strings)", key);
}

COLD static bool fail_sparse(jenc *e, size_t nnum, double maxi) {
    char detail[96];
    snprintf(detail, sizeof detail, "%zu values, highest index %.0f", nnum, maxi);
    return fail(e, "a sparse array (%s); JSON arrays have no holes: fill them with "
                   "ms.json.null", detail);
}

/* What kind of table the one at idx is: 'a' an array of n, 'o' an object
 * of n members (n == 0: empty), or 0 after a failure. */
static char classify(jenc *e, int idx, size_t *n) {
    lua_State *L = e->L;
    size_t nstr = 0, nnum = 0;
    double maxi = 0;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int kt = lua_type(L, -2);
        if (kt == LUA_TSTRING) {
            nstr++;
        } else if (kt == LUA_TNUMBER) {
            double k = lua_tonumber(L, -2);
            if (!(k == floor(k) && k >= 1 && k <= 9007199254740992.0)) {
                lua_pop(L, 2);
                return fail_key(e, k), 0;
            }
            nnum++;
            if (k > maxi)
                maxi = k;
        } else {
            const char *tn = lua_typename(L, kt);
            lua_pop(L, 2);
            return fail(e, "a table with a %s key (JSON object keys are strings)", tn), 0;
        }
        lua_pop(L, 1);
    }
    if (nstr && nnum)
        return fail(e, "a table with both string and number keys (%s)",
                    "JSON has arrays or objects, not both in one"), 0;
    if (nnum && (double)nnum != maxi)
        return fail_sparse(e, nnum, maxi), 0;
    *n = nstr + nnum;
    return nnum ? 'a' : 'o';
}

static bool enc_array(jenc *e, int idx, size_t n) {
    lua_State *L = e->L;
    jb_char(&e->b, '[');
    for (size_t i = 1; i <= n; i++) {
        if (i > 1)
            jb_char(&e->b, ',');
        e->steps[e->depth - 1] = (jstep){.key = NULL, .index = (double)i};
        lua_rawgeti(L, idx, (int)i);
        bool ok = enc_value(e, lua_gettop(L));
        lua_pop(L, 1);
        if (!ok)
            return false;
    }
    jb_char(&e->b, ']');
    return true;
}

static bool enc_member(jenc *e, int key_idx, int value_idx, bool first) {
    size_t klen;
    const char *k = lua_tolstring(e->L, key_idx, &klen); /* a string: no conversion in place */
    e->steps[e->depth - 1] = (jstep){.key = k, .klen = klen};
    if (!first)
        jb_char(&e->b, ',');
    if (!put_string(e, k, klen))
        return false;
    jb_char(&e->b, ':');
    return enc_value(e, value_idx);
}

typedef struct jkey {
    const char *s;
    size_t len;
} jkey;

static int key_cmp(const void *x, const void *y) {
    const jkey *a = x, *b = y;
    int c = memcmp(a->s, b->s, a->len < b->len ? a->len : b->len);
    return c ? c : (a->len > b->len) - (a->len < b->len);
}

static bool enc_object_sorted(jenc *e, int idx, size_t n) {
    lua_State *L = e->L;
    /* The key strings stay alive: the table holds them and is not changed. */
    jkey *keys = lua_newuserdata(L, n * sizeof *keys);
    int keys_slot = lua_gettop(L);
    size_t i = 0;
    lua_pushnil(L);
    while (lua_next(L, idx) && i < n) {
        keys[i].s = lua_tolstring(L, -2, &keys[i].len);
        i++;
        lua_pop(L, 1);
    }
    qsort(keys, i, sizeof *keys, key_cmp);
    jb_char(&e->b, '{');
    for (size_t k = 0; k < i; k++) {
        lua_pushlstring(L, keys[k].s, keys[k].len);
        lua_pushvalue(L, -1);
        lua_rawget(L, idx);
        bool ok = enc_member(e, lua_gettop(L) - 1, lua_gettop(L), k == 0);
        lua_pop(L, 2);
        if (!ok)
            return false;
    }
    lua_remove(L, keys_slot);
    jb_char(&e->b, '}');
    return true;
}

static bool enc_object(jenc *e, int idx, size_t n) {
    lua_State *L = e->L;
    if (e->sort_keys)
        return enc_object_sorted(e, idx, n);
    jb_char(&e->b, '{');
    bool first = true;
    lua_pushnil(L);
    while (lua_next(L, idx)) {
        int top = lua_gettop(L);
        if (!enc_member(e, top - 1, top, first)) {
            lua_pop(L, 2);
            return false;
        }
        first = false;
        lua_pop(L, 1);
    }
    jb_char(&e->b, '}');
    return true;
}

static bool enc_table(jenc *e, int idx) {
    lua_State *L = e->L;
    if (lua_getmetatable(L, idx)) {
        lua_pop(L, 1);
        return fail(e, "a table with a metatable cannot be encoded (%s)",
                    "as in messages, only plain tables");
    }
    const void *self = lua_topointer(L, idx);
    for (int i = 0; i < e->depth; i++)
        if (e->open[i] == self)
            return fail(e, "a cycle (%s) cannot be encoded",
                        "this table contains a table that contains it");
    if (e->depth >= LJSON_MAX_DEPTH)
        return fail(e, "nesting deeper than %s levels cannot be encoded", "1000");
    luaL_checkstack(L, 8, "ms.json.encode: nesting too deep for the Lua stack");
    size_t n = 0;
    char kind = classify(e, idx, &n);
    if (!kind)
        return false;
    if (n == 0) {
        jb_add(&e->b, e->empty_array ? "[]" : "{}", 2);
        return true;
    }
    e->open[e->depth++] = self;
    bool ok = kind == 'a' ? enc_array(e, idx, n) : enc_object(e, idx, n);
    if (ok)
        e->depth--;
    return ok;
}

static bool enc_value(jenc *e, int idx) {
    lua_State *L = e->L;
    switch (lua_type(L, idx)) {
    case LUA_TNIL: jb_add(&e->b, "null", 4); return true;
    case LUA_TBOOLEAN:
        if (lua_toboolean(L, idx))
            jb_add(&e->b, "true", 4);
        else
            jb_add(&e->b, "false", 5);
        return true;
    case LUA_TNUMBER: return put_number(e, lua_tonumber(L, idx));
    case LUA_TSTRING: {
        size_t len;
        const char *s = lua_tolstring(L, idx, &len);
        return put_string(e, s, len);
    }
    case LUA_TLIGHTUSERDATA:
        if (lua_touserdata(L, idx) == NULL) { /* ms.json.null */
            jb_add(&e->b, "null", 4);
            return true;
        }
        return fail(e, "a %s cannot be encoded", "light userdata");
    case LUA_TTABLE: return enc_table(e, idx);
    default:
        return fail(e, "a %s cannot be encoded (only nil, booleans, numbers, strings, plain "
                       "tables and ms.json.null)", lua_typename(L, lua_type(L, idx)));
    }
}

/* Pushes nil and an error value { kind, code, message, ... } with the
 * extra fields the caller sets after. */
static void push_failure(lua_State *L, const char *message) {
    lua_pushnil(L);
    lerr_push(L, MS_E_INVALID_ARGUMENT, message, NULL);
}

/* ms.json.encode(value [, opts]) -> text | nil, err (err.path names the
 * value at fault).  opts: empty_table = "object" | "array", sort_keys. */
static int l_encode(lua_State *L) {
    lua_settop(L, 2);
    bool empty_array = false, sort_keys = false;
    if (!lua_isnil(L, 2)) {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "empty_table");
        const char *et = lua_tostring(L, -1);
        if (!lua_isnil(L, -1) && (!et || (strcmp(et, "array") && strcmp(et, "object"))))
            luaL_argerror(L, 2, "empty_table must be \"object\" or \"array\"");
        empty_array = et && strcmp(et, "array") == 0;
        lua_getfield(L, 2, "sort_keys");
        sort_keys = lua_toboolean(L, -1);
        lua_pop(L, 2);
    }
    jenc *e = lua_newuserdata(L, sizeof *e); /* slot 3: the encoder's state, collected after */
    e->L = L;
    e->depth = 0;
    e->empty_array = empty_array;
    e->sort_keys = sort_keys;
    e->err[0] = '\0';
    jb_init(&e->b, L); /* slot 4 */
    if (!enc_value(e, 1)) {
        char message[560];
        snprintf(message, sizeof message, "ms.json.encode: %s", e->err);
        push_failure(L, message);
        lua_pushstring(L, e->path);
        lua_setfield(L, -2, "path");
        return 2;
    }
    lua_pushlstring(L, e->b.p, e->b.len);
    return 1;
}

/* ---- decoding ---- */

typedef struct jscan {
    size_t values;              /* an upper bound of the values in the text */
    size_t err_at;              /* where the problem is (err != NULL) */
    const char *err;
} jscan;

/* The first pass over the text (see the top of this file). */
static bool prescan(const char *s, size_t len, jscan *out) {
    bool in_str = false;
    int depth = 0;
    size_t values = 1;
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (in_str) {
            if (c == '\\') {
                if (i + 5 < len && s[i + 1] == 'u' && memcmp(s + i + 2, "0000", 4) == 0) {
                    out->err_at = i;
                    out->err = "a \\u0000 escape (a NUL character) in a string is not supported";
                    return false;
                }
                i++;
            } else if (c == '"') {
                in_str = false;
            } else if (c < 0x20) {
                out->err_at = i;
                out->err = "a control character inside a string (JSON needs it escaped)";
                return false;
            }
            continue;
        }
        switch (c) {
        case '"': in_str = true; break;
        case '[':
        case '{':
            values++;
            if (++depth > LJSON_MAX_DEPTH) {
                out->err_at = i;
                out->err = "nesting deeper than 1000 levels";
                return false;
            }
            break;
        case ']':
        case '}': depth--; break;
        case ',':
        case ':': values++; break;
        default: break;
        }
    }
    out->values = values;
    return true;
}

/* Pushes nil, err for a problem at byte offset at of text: err.position
 * (the byte offset, from 0), err.line and err.column (from 1). */
static int decode_failure(lua_State *L, const char *text, size_t len, size_t at,
                          const char *what) {
    if (at > len)
        at = len;
    size_t line = 1, col = 1;
    for (size_t i = 0; i < at; i++) {
        if (text[i] == '\n') {
            line++;
            col = 1;
        } else {
            col++;
        }
    }
    char near[40];
    size_t k = 0;
    for (size_t i = at; i < len && k < 16; i++, k++)
        near[k] = text[i] >= 0x20 && text[i] < 0x7f && text[i] != '\'' ? text[i] : '?';
    near[k] = '\0';
    char message[300];
    if (at == len)
        snprintf(message, sizeof message,
                 "ms.json.decode: %s at byte %zu (line %zu, column %zu): the text ends there",
                 what, at, line, col);
    else
        snprintf(message, sizeof message,
                 "ms.json.decode: %s at byte %zu (line %zu, column %zu), near '%s'", what, at,
                 line, col, near);
    push_failure(L, message);
    lua_pushnumber(L, (double)at);
    lua_setfield(L, -2, "position");
    lua_pushnumber(L, (double)line);
    lua_setfield(L, -2, "line");
    lua_pushnumber(L, (double)col);
    lua_setfield(L, -2, "column");
    return 2;
}

/* The parsed tree, owned by a userdata while it becomes Lua values. */
typedef struct jtree {
    cJSON *root;
} jtree;

static int jtree_gc(lua_State *L) {
    jtree *t = lua_touserdata(L, 1);
    if (t && t->root) {
        cJSON_Delete(t->root);
        t->root = NULL;
    }
    return 0;
}

typedef struct jdec {
    lua_State *L;
    int null_idx;               /* what JSON null becomes */
    int depth;
    char path[256];
    jstep steps[LJSON_MAX_DEPTH + 1];
} jdec;

/* Pushes j as a Lua value; false (nothing pushed) for a number out of
 * the range of a double, with dec->path naming it. */
static bool to_lua(jdec *d, const cJSON *j) {
    lua_State *L = d->L;
    luaL_checkstack(L, 4, "ms.json.decode: nesting too deep for the Lua stack");
    if (cJSON_IsNull(j)) {
        lua_pushvalue(L, d->null_idx);
    } else if (cJSON_IsTrue(j)) {
        lua_pushboolean(L, 1);
    } else if (cJSON_IsFalse(j)) {
        lua_pushboolean(L, 0);
    } else if (cJSON_IsNumber(j)) {
        if (isinf(j->valuedouble)) {
            path_render(d->steps, d->depth, d->path, sizeof d->path);
            return false;
        }
        lua_pushnumber(L, j->valuedouble);
    } else if (cJSON_IsString(j)) {
        lua_pushstring(L, j->valuestring ? j->valuestring : "");
    } else if (cJSON_IsArray(j)) {
        lua_createtable(L, cJSON_GetArraySize(j), 0);
        int i = 1;
        d->depth++;
        for (const cJSON *c = j->child; c; c = c->next, i++) {
            d->steps[d->depth - 1] = (jstep){.key = NULL, .index = i};
            if (!to_lua(d, c))
                return lua_pop(L, 1), false;
            lua_rawseti(L, -2, i);
        }
        d->depth--;
    } else if (cJSON_IsObject(j)) {
        lua_createtable(L, 0, cJSON_GetArraySize(j));
        d->depth++;
        for (const cJSON *c = j->child; c; c = c->next) {
            const char *k = c->string ? c->string : "";
            d->steps[d->depth - 1] = (jstep){.key = k, .klen = strlen(k)};
            lua_pushstring(L, k);
            if (!to_lua(d, c))
                return lua_pop(L, 2), false;
            lua_rawset(L, -3);
        }
        d->depth--;
    } else {
        lua_pushvalue(L, d->null_idx); /* cJSON_Raw and invalid: never from the parser */
    }
    return true;
}

/* A cJSON node with its key and bookkeeping, as malloc sees it. */
#define JSON_NODE_BYTES 96

/* ms.json.decode(text [, opts]) -> value | nil, err (err.position,
 * err.line, err.column).  opts.null: what JSON null becomes (default
 * ms.json.null). */
static int l_decode(lua_State *L) {
    size_t len;
    const char *text = luaL_checklstring(L, 1, &len);
    lua_settop(L, 2);
    if (lua_isnil(L, 2)) {
        lua_pushlightuserdata(L, NULL);
    } else {
        luaL_checktype(L, 2, LUA_TTABLE);
        lua_getfield(L, 2, "null");
        if (lua_isnil(L, -1)) {
            lua_pop(L, 1);
            lua_pushlightuserdata(L, NULL);
        }
    }
    int null_idx = lua_gettop(L);
    jscan scan = {0};
    if (!prescan(text, len, &scan))
        return decode_failure(L, text, len, scan.err_at, scan.err);
    agent *a = agent_from_state(L);
    if (a && a->mem_limit > 0) {
        size_t used = atomic_load_explicit(&a->mem_used, memory_order_relaxed);
        size_t left = a->mem_limit > used ? a->mem_limit - used : 0;
        double need = (double)scan.values * JSON_NODE_BYTES + (double)len;
        if (need > (double)left) {
            char message[300];
            snprintf(message, sizeof message,
                     "ms.json.decode: the text (%zu bytes, up to %zu values) needs about %.0f "
                     "bytes to decode, more than the agent's memory limit leaves (%zu of %zu)",
                     len, scan.values, need, left, a->mem_limit);
            push_failure(L, message);
            return 2;
        }
    }
    jtree *tree = lua_newuserdata(L, sizeof *tree);
    tree->root = NULL;
    if (luaL_newmetatable(L, "ms.json.tree")) {
        lua_pushcfunction(L, jtree_gc);
        lua_setfield(L, -2, "__gc");
    }
    lua_setmetatable(L, -2);
    int tree_idx = lua_gettop(L);
    const char *end = NULL;
    tree->root = cJSON_ParseWithLengthOpts(text, len, &end, false);
    if (!tree->root)
        return decode_failure(L, text, len, end ? (size_t)(end - text) : 0,
                              "invalid JSON");
    size_t at = (size_t)(end - text);
    while (at < len && (text[at] == ' ' || text[at] == '\t' || text[at] == '\n' ||
                        text[at] == '\r'))
        at++;
    if (at < len)
        return decode_failure(L, text, len, at, "unexpected text after the value");
    jdec *d = lua_newuserdata(L, sizeof *d);
    d->L = L;
    d->null_idx = null_idx;
    d->depth = 0;
    bool ok = to_lua(d, tree->root);
    cJSON_Delete(tree->root);
    tree->root = NULL;
    if (!ok) {
        char message[320];
        snprintf(message, sizeof message,
                 "ms.json.decode: %s: a number out of the range of a double", d->path);
        push_failure(L, message);
        lua_pushstring(L, d->path);
        lua_setfield(L, -2, "path");
        return 2;
    }
    (void)tree_idx;
    return 1;
}

void ljson_push_module(lua_State *L) {
    lua_createtable(L, 0, 3);
    lua_pushcfunction(L, l_encode);
    lua_setfield(L, -2, "encode");
    lua_pushcfunction(L, l_decode);
    lua_setfield(L, -2, "decode");
    lua_pushlightuserdata(L, NULL);
    lua_setfield(L, -2, "null");
}
