/*
 * test_unwind_jit.c - ms-host/unwind_jit.c against libgcc: a table laid out
 * as LuaJIT's lj_err_register_mcode writes it is registered with ours and
 * an identical copy with libgcc's own functions; lookups of the same code
 * offsets must give the same FDE offset and function start.  A table ours
 * does not read goes to libgcc and is still found; deregistered tables are
 * no longer found.  Exit status 0 when every check holds.
 */
#define _GNU_SOURCE
#include <dlfcn.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct dwarf_eh_bases {
    void *tbase;
    void *dbase;
    void *func;
};
void __register_frame(const void *begin);
void __deregister_frame(const void *begin);
const void *_Unwind_Find_FDE(void *pc, struct dwarf_eh_bases *bases);

typedef void reg_fn(const void *);
typedef const void *find_fn(void *, struct dwarf_eh_bases *);

static int failures;
#define CHECK(c)                                                                  \
    do {                                                                          \
        if (!(c)) {                                                               \
            fprintf(stderr, "%s:%d: check failed: %s\n", __FILE__, __LINE__, #c); \
            failures++;                                                           \
        }                                                                         \
    } while (0)

enum { TABLE_SIZE = 60, CODE_SIZE = 1000 };

static void personality(void) {}

/* LuaJIT 2.1's x86-64 template (lj_err.c, err_frame_jit_template): a CIE
 * "zPR" (absolute personality, FDE pointers pcrel|sdata4), one FDE whose
 * code starts right after the table, a terminator.  With aug "zPLR" the
 * CIE is one unwind_jit.c leaves to libgcc. */
static uint8_t *make_table(const char *aug) {
    uint8_t *t = aligned_alloc(16, 4096);
    memset(t, 0, 4096);
    uint32_t cie_len = 0x1c, fde_len = 0x14, cie_ptr = 0x24, code_ofs = 0x14, code = CODE_SIZE;
    memcpy(t + 0, &cie_len, 4);
    t[8] = 1; /* version */
    if (strcmp(aug, "zPR") == 0) {
        memcpy(t + 9, "zPR", 4);
        t[13] = 1, t[14] = 0x78, t[15] = 16, t[16] = 10, t[17] = 0;
        void (*p)(void) = personality;
        memcpy(t + 18, &p, 8);
        t[26] = 0x1b;
    } else { /* zPLR: personality, LSDA encoding, FDE encoding */
        memcpy(t + 9, "zPLR", 5);
        t[14] = 1, t[15] = 0x78, t[16] = 16, t[17] = 11, t[18] = 0;
        void (*p)(void) = personality;
        memcpy(t + 19, &p, 8);
        t[27] = 0x1b, t[28] = 0x1b;
    }
    memcpy(t + 0x20, &fde_len, 4);
    memcpy(t + 0x24, &cie_ptr, 4);
    memcpy(t + 0x28, &code_ofs, 4);
    memcpy(t + 0x2c, &code, 4);
    if (strcmp(aug, "zPLR") == 0)
        t[0x30] = 4; /* the FDE's augmentation: its LSDA pointer (0) */
    return t;
}

int main(void) {
    /* libgcc_s as ms-host has it (through libluajit): loaded globally, so
     * that unwind_jit.c's RTLD_NEXT lookups find it too. */
    void *gcc = dlopen("libgcc_s.so.1", RTLD_NOW | RTLD_GLOBAL);
    reg_fn *gcc_register = gcc ? (reg_fn *)dlsym(gcc, "__register_frame") : NULL;
    reg_fn *gcc_deregister = gcc ? (reg_fn *)dlsym(gcc, "__deregister_frame") : NULL;
    find_fn *gcc_find = gcc ? (find_fn *)dlsym(gcc, "_Unwind_Find_FDE") : NULL;
    if (!gcc_register || !gcc_deregister || !gcc_find) {
        fprintf(stderr, "libgcc's unwinder functions not found\n");
        return 1;
    }
    uint8_t *ours = make_table("zPR"), *theirs = make_table("zPR");
    __register_frame(ours);
    gcc_register(theirs);
    size_t offsets[] = {TABLE_SIZE, TABLE_SIZE + 1, TABLE_SIZE + 500, TABLE_SIZE + CODE_SIZE - 1};
    for (size_t i = 0; i < sizeof offsets / sizeof offsets[0]; i++) {
        struct dwarf_eh_bases a = {0}, b = {0};
        const uint8_t *fa = _Unwind_Find_FDE(ours + offsets[i], &a);
        const uint8_t *fb = gcc_find(theirs + offsets[i], &b);
        CHECK(fa != NULL && fb != NULL);
        if (fa && fb) {
            CHECK(fa - ours == fb - theirs);
            CHECK((uint8_t *)a.func - ours == (uint8_t *)b.func - theirs);
            CHECK(a.tbase == b.tbase && a.dbase == b.dbase);
        }
    }
    struct dwarf_eh_bases x;
    CHECK(_Unwind_Find_FDE(ours + TABLE_SIZE + CODE_SIZE, &x) == NULL); /* past the code */
    CHECK(_Unwind_Find_FDE(ours + TABLE_SIZE - 1, &x) == NULL);         /* the table itself */

    /* A CIE ours does not read: libgcc keeps it, and lookups still find it. */
    uint8_t *other = make_table("zPLR");
    __register_frame(other);
    CHECK(_Unwind_Find_FDE(other + TABLE_SIZE + 10, &x) != NULL);
    __deregister_frame(other);
    CHECK(_Unwind_Find_FDE(other + TABLE_SIZE + 10, &x) == NULL);

    /* Many tables, then all gone. */
    enum { MANY = 2000 };
    uint8_t **many = malloc(MANY * sizeof *many);
    for (int i = 0; i < MANY; i++) {
        many[i] = make_table("zPR");
        __register_frame(many[i]);
    }
    for (int i = 0; i < MANY; i++) {
        const uint8_t *f = _Unwind_Find_FDE(many[i] + TABLE_SIZE + (size_t)i % CODE_SIZE, &x);
        CHECK(f == many[i] + 0x20 && x.func == many[i] + TABLE_SIZE);
    }
    for (int i = 0; i < MANY; i++) {
        __deregister_frame(many[i]);
        CHECK(_Unwind_Find_FDE(many[i] + TABLE_SIZE, &x) == NULL);
        free(many[i]);
    }
    free(many);

    __deregister_frame(ours);
    gcc_deregister(theirs);
    CHECK(_Unwind_Find_FDE(ours + TABLE_SIZE, &x) == NULL);
    free(ours);
    free(theirs);
    free(other);
    if (failures)
        fprintf(stderr, "%d checks failed\n", failures);
    else
        printf("unwind_jit: all checks passed\n");
    return failures ? 1 : 0;
}
