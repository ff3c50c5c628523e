/*
 * torch_pickle.c - the restricted pickle machine that runs a torch.save
 * archive's data.pkl.
 *
 * torch.save (torch >= 1.6) writes a zip archive holding `<prefix>/data.pkl`,
 * a pickle of the state dict, and one stored entry `<prefix>/data/<key>` of
 * raw little-endian bytes per storage. The pickle refers to storages through
 * persistent ids and rebuilds tensors by calling torch._utils functions.
 *
 * A pickle is a program, and a general unpickler runs whatever callables it
 * names. This one is a small stack machine that knows a handful of opcodes
 * and a closed list of globals, and *interprets* those globals itself: it
 * never calls or imports anything, so a hostile file can do no more than
 * fail to load. Every length, index and count read from the file is checked,
 * and fixed limits bound the memory a file can make it allocate.
 *
 *   limits                 what data.pkl may make the machine allocate
 *   arena                  every value lives here and is freed at once
 *   values, globals        the closed list of names a pickle may refer to
 *                          (the value types are in torch_pickle.h)
 *   machine                stack, marks, memo, errors
 *   opcodes                helpers for the opcodes with arguments
 *   persistent ids         storages: ('storage', type, key, location, numel)
 *   calls                  REDUCE on OrderedDict, _rebuild_tensor_v2, _rebuild_parameter, torch.Size
 *   interpreter            the opcode loop, bc__pickle_run
 * What the unpickled state dict means (named, checked tensors and
 * bitsandbytes quant states) is torch.c's.
 *
 * Opcode facts follow CPython's Lib/pickletools.py; nothing here is copied
 * from an unpickler.
 */
#include "formats/torch_pickle.h"

#include <stdarg.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

typedef unsigned long long ull;

/* ------------------------------------------------------------------------ */
/* Limits                                                                   */
/* ------------------------------------------------------------------------ */

/* A state dict of a few thousand tensors needs a stack of about 2000 values
 * (picklers batch SETITEMS by 1000 pairs), three nested MARKs, a memo entry
 * and a dozen values per tensor. The limits leave a wide margin (and
 * BC__PICKLE_MAX_MARKS, in torch_pickle.h, allows 256 nested MARKs). */
#define MAX_STACK       (1u << 20)          /* values on the stack at once */
#define MAX_MEMO        (1u << 20)          /* memo indices 0 .. MAX_MEMO-1 */
#define MAX_VALUES      (1u << 22)          /* values created in total */
#define MAX_ARENA_BYTES ((size_t)256 << 20) /* bytes held by the arena */

/* ------------------------------------------------------------------------ */
/* Arena                                                                    */
/* ------------------------------------------------------------------------ */

/* A block of values; the arena's chunks form a list, newest first. */
typedef struct bc__pickle_chunk {
    struct bc__pickle_chunk *next; /* The chunk allocated before this one. */
    size_t used;                   /* Bytes of data handed out so far. */
    size_t cap;                    /* Bytes of data in this chunk. */
    max_align_t data[];            /* The bytes themselves, aligned for any type. */
} arena_chunk;

#define ARENA_ALIGN sizeof(max_align_t)
#define ARENA_CHUNK ((size_t)64 << 10)

/* Returns n bytes, or NULL with *over_limit set when the arena would pass
 * its limit (and clear when malloc failed). */
static void *arena_alloc(bc__pickle_arena *a, size_t n, int *over_limit) {
    *over_limit = 0;
    if (n > MAX_ARENA_BYTES) {
        *over_limit = 1;
        return NULL;
    }
    n = (n + ARENA_ALIGN - 1) / ARENA_ALIGN * ARENA_ALIGN;
    if (n == 0) n = ARENA_ALIGN;
    if (a->head == NULL || a->head->cap - a->head->used < n) {
        size_t cap = n > ARENA_CHUNK ? n : ARENA_CHUNK;
        if (cap > MAX_ARENA_BYTES - a->total) {
            *over_limit = 1;
            return NULL;
        }
        arena_chunk *c = malloc(sizeof *c + cap);
        if (c == NULL) return NULL;
        c->next = a->head;
        c->used = 0;
        c->cap = cap;
        a->head = c;
        a->total += cap;
    }
    void *p = (unsigned char *)a->head->data + a->head->used;
    a->head->used += n;
    return p;
}

static void arena_free(bc__pickle_arena *a) {
    arena_chunk *c = a->head;
    while (c != NULL) {
        arena_chunk *next = c->next;
        free(c);
        c = next;
    }
    a->head = NULL;
    a->total = 0;
}

/* ------------------------------------------------------------------------ */
/* Values                                                                   */
/* ------------------------------------------------------------------------ */

const char *bc__pv_kind_name(bc__pv_kind kind) {
    switch (kind) {
    case BC__PV_NONE: return "None";
    case BC__PV_BOOL: return "a bool";
    case BC__PV_INT: return "an int";
    case BC__PV_FLOAT: return "a float";
    case BC__PV_STR: return "a str";
    case BC__PV_BYTES: return "a bytes";
    case BC__PV_TUPLE: return "a tuple";
    case BC__PV_LIST: return "a list";
    case BC__PV_DICT: return "a dict";
    case BC__PV_GLOBAL: return "a global";
    case BC__PV_STORAGE: return "a storage";
    case BC__PV_TENSOR: return "a tensor";
    }
    return "?";
}

/* ------------------------------------------------------------------------ */
/* Globals                                                                  */
/* ------------------------------------------------------------------------ */

/* Everything a pickle may name. Unsupported storage types are known so that a
 * tensor of, say, float64 fails with a clear message naming the tensor rather
 * than as a forbidden global. */
static const bc__pickle_global known_globals[] = {
    {"collections", "OrderedDict", BC__GLOBAL_ORDERED_DICT, 0, BC_DTYPE_F32, 0},
    {"torch._utils", "_rebuild_tensor_v2", BC__GLOBAL_REBUILD_TENSOR_V2, 0, BC_DTYPE_F32, 0},
    {"torch._utils", "_rebuild_parameter", BC__GLOBAL_REBUILD_PARAMETER, 0, BC_DTYPE_F32, 0},
    {"torch", "FloatStorage", BC__GLOBAL_STORAGE, 1, BC_DTYPE_F32, 4},
    {"torch", "HalfStorage", BC__GLOBAL_STORAGE, 1, BC_DTYPE_F16, 2},
    {"torch", "BFloat16Storage", BC__GLOBAL_STORAGE, 1, BC_DTYPE_BF16, 2},
    {"torch", "DoubleStorage", BC__GLOBAL_STORAGE, 0, BC_DTYPE_F32, 8},
    {"torch", "LongStorage", BC__GLOBAL_STORAGE, 0, BC_DTYPE_F32, 8},
    {"torch", "IntStorage", BC__GLOBAL_STORAGE, 2, BC_DTYPE_COUNT, 4},
    {"torch", "ShortStorage", BC__GLOBAL_STORAGE, 0, BC_DTYPE_F32, 2},
    {"torch", "CharStorage", BC__GLOBAL_STORAGE, 0, BC_DTYPE_F32, 1},
    {"torch", "ByteStorage", BC__GLOBAL_STORAGE, 2, BC_DTYPE_COUNT, 1},
    {"torch", "BoolStorage", BC__GLOBAL_STORAGE, 0, BC_DTYPE_F32, 1},
    {"torch", "ComplexFloatStorage", BC__GLOBAL_STORAGE, 0, BC_DTYPE_F32, 8},
    {"torch", "ComplexDoubleStorage", BC__GLOBAL_STORAGE, 0, BC_DTYPE_F32, 16},
    /* The scalars of bitsandbytes 4-bit quant states (Baichuan2 4bits). */
    {"torch", "Size", BC__GLOBAL_SIZE, 0, BC_DTYPE_F32, 0},
    {"torch", "float16", BC__GLOBAL_DTYPE, 0, BC_DTYPE_F16, 2},
    {"torch", "bfloat16", BC__GLOBAL_DTYPE, 0, BC_DTYPE_BF16, 2},
    {"torch", "float32", BC__GLOBAL_DTYPE, 0, BC_DTYPE_F32, 4},
};

static int str_is(const char *s, size_t len, const char *lit) { return strlen(lit) == len && memcmp(s, lit, len) == 0; }

static const bc__pickle_global *find_global(const char *module, size_t module_len, const char *name, size_t name_len) {
    for (size_t i = 0; i < sizeof known_globals / sizeof known_globals[0]; i++) {
        const bc__pickle_global *g = &known_globals[i];
        if (str_is(module, module_len, g->module) && str_is(name, name_len, g->name)) return g;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Machine                                                                  */
/* ------------------------------------------------------------------------ */

static int vm_fail(bc__pickle *m, bc_status status, const char *fmt, ...) BC__PRINTF(3, 4);

/* Sets an error "<path>: <what> (in <prefix>/data.pkl at offset N)". */
static int vm_fail(bc__pickle *m, bc_status status, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return bc__errorf(m->err, status, "%s: %s (in %.*s at offset %llu)", m->path, what,
                      STR_ARG(m->pkl_name, m->pkl_name_len), (ull)m->op_offset);
}

#define FAIL(m, ...) vm_fail((m), BC_STATUS_ERROR_FORMAT, __VA_ARGS__)

void *bc__pickle_alloc(bc__pickle *m, size_t n) {
    int over_limit;
    void *p = arena_alloc(&m->arena, n, &over_limit);
    if (p != NULL) return p;
    if (over_limit)
        vm_fail(m, BC_STATUS_ERROR_FORMAT, "the pickle needs more than the limit of %zu MiB of memory",
                MAX_ARENA_BYTES >> 20);
    else
        vm_fail(m, BC_STATUS_ERROR_MEMORY, "out of memory");
    return NULL;
}

static bc__pv *new_value(bc__pickle *m, bc__pv_kind kind) {
    if (m->n_values >= MAX_VALUES) {
        FAIL(m, "the pickle creates more than the limit of %u values", MAX_VALUES);
        return NULL;
    }
    bc__pv *v = bc__pickle_alloc(m, sizeof *v);
    if (v == NULL) return NULL;
    memset(v, 0, sizeof *v);
    v->kind = kind;
    m->n_values++;
    return v;
}

/* Makes room for `need` pointers in an arena array of *cap pointers, of
 * which the first n are in use. */
static int reserve(bc__pickle *m, bc__pv ***items, size_t *cap, size_t n, size_t need) {
    if (need <= *cap) return 0;
    if (need > MAX_ARENA_BYTES / sizeof(bc__pv *))
        return FAIL(m, "a container of %zu items passes the limit of %zu MiB of memory", need, MAX_ARENA_BYTES >> 20);
    size_t new_cap = *cap ? *cap : 4;
    while (new_cap < need) new_cap *= 2;
    bc__pv **p = bc__pickle_alloc(m, new_cap * sizeof *p);
    if (p == NULL) return -1;
    if (n > 0) memcpy(p, *items, n * sizeof *p);
    *items = p;
    *cap = new_cap;
    return 0;
}

static int push(bc__pickle *m, bc__pv *v) {
    if (v == NULL) return -1; /* the allocation failed and set the error */
    if (m->n_stack == m->cap_stack) {
        if (m->n_stack >= MAX_STACK) return FAIL(m, "stack depth exceeds the limit of %u values", MAX_STACK);
        size_t cap = m->cap_stack ? m->cap_stack * 2 : 64;
        bc__pv **p = realloc(m->stack, cap * sizeof *p);
        if (p == NULL) return vm_fail(m, BC_STATUS_ERROR_MEMORY, "out of memory");
        m->stack = p;
        m->cap_stack = cap;
    }
    m->stack[m->n_stack++] = v;
    return 0;
}

/* The lowest stack height an opcode may pop to: the last open MARK. */
static size_t fence(const bc__pickle *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static int underflow(bc__pickle *m, const char *op) {
    return FAIL(m, "stack underflow: %s needs a value %s", op,
                m->n_marks ? "above the last MARK" : "but the stack is empty");
}

static int pop(bc__pickle *m, const char *op, bc__pv **out) {
    *out = NULL;
    if (m->n_stack <= fence(m)) return underflow(m, op);
    *out = m->stack[--m->n_stack];
    return 0;
}

static int peek(bc__pickle *m, const char *op, bc__pv **out) {
    *out = NULL;
    if (m->n_stack <= fence(m)) return underflow(m, op);
    *out = m->stack[m->n_stack - 1];
    return 0;
}

/* Closes the last MARK: *at is the stack height when it was set. */
static int pop_mark(bc__pickle *m, const char *op, size_t *at) {
    *at = 0;
    if (m->n_marks == 0) return FAIL(m, "%s without a MARK before it", op);
    *at = m->marks[--m->n_marks];
    return 0;
}

void bc__pickle_free(bc__pickle *m) {
    free(m->stack);
    free(m->memo);
    arena_free(&m->arena);
    m->stack = NULL;
    m->memo = NULL;
}

void bc__pickle_init(bc__pickle *m, const char *path, const bc__zip *zip, const bc__zip_entry *pkl, const uint8_t *data,
                     bc__err *err) {
    memset(m, 0, sizeof *m);
    m->path = path;
    m->zip = zip;
    m->pkl_name = pkl->name;
    m->pkl_name_len = pkl->name_len;
    m->prefix = pkl->name;
    m->prefix_len = pkl->name_len - (sizeof "/data.pkl" - 1);
    m->data = data;
    m->len = (size_t)pkl->size;
    m->none.kind = BC__PV_NONE;
    m->yes.kind = BC__PV_BOOL;
    m->yes.u.i = 1;
    m->no.kind = BC__PV_BOOL;
    m->err = err;
}

/* ------------------------------------------------------------------------ */
/* Opcodes                                                                  */
/* ------------------------------------------------------------------------ */

/* Checks that n argument bytes follow the opcode. */
static int need(bc__pickle *m, const char *op, uint64_t n) {
    if (n > m->len - m->pos)
        return FAIL(m, "%s needs %llu bytes, but only %llu remain (truncated?)", op, (ull)n, (ull)(m->len - m->pos));
    return 0;
}

static int read_u8(bc__pickle *m, const char *op, uint64_t *v) {
    *v = 0;
    if (need(m, op, 1) != 0) return -1;
    *v = m->data[m->pos++];
    return 0;
}
static int read_u16(bc__pickle *m, const char *op, uint64_t *v) {
    *v = 0;
    if (need(m, op, 2) != 0) return -1;
    *v = bc__le16(m->data + m->pos);
    m->pos += 2;
    return 0;
}
static int read_u32(bc__pickle *m, const char *op, uint64_t *v) {
    *v = 0;
    if (need(m, op, 4) != 0) return -1;
    *v = bc__le32(m->data + m->pos);
    m->pos += 4;
    return 0;
}
static int read_u64(bc__pickle *m, const char *op, uint64_t *v) {
    *v = 0;
    if (need(m, op, 8) != 0) return -1;
    *v = bc__le64(m->data + m->pos);
    m->pos += 8;
    return 0;
}

/* Pushes an int, a str or bytes of n bytes at the read position. */
static int push_int(bc__pickle *m, int64_t i) {
    bc__pv *v = new_value(m, BC__PV_INT);
    if (v != NULL) v->u.i = i;
    return push(m, v);
}

static int push_string(bc__pickle *m, const char *op, bc__pv_kind kind, uint64_t n) {
    if (n > m->len - m->pos)
        return FAIL(m, "%s declares %llu bytes, but only %llu remain (truncated?)", op, (ull)n, (ull)(m->len - m->pos));
    bc__pv *v = new_value(m, kind);
    if (v == NULL) return -1;
    v->u.str.s = (const char *)m->data + m->pos;
    v->u.str.len = (size_t)n;
    m->pos += (size_t)n;
    return push(m, v);
}

/* LONG1 and LONG4: n bytes of little-endian two's complement. */
static int push_long(bc__pickle *m, const char *op, uint64_t n) {
    if (n > 8) return FAIL(m, "%s: a %llu-byte integer does not fit in 64 bits", op, (ull)n);
    if (need(m, op, n) != 0) return -1;
    uint64_t u = 0;
    for (uint64_t i = 0; i < n; i++) u |= (uint64_t)m->data[m->pos + i] << (8 * i);
    if (n > 0 && n < 8 && (m->data[m->pos + n - 1] & 0x80)) u |= ~(uint64_t)0 << (8 * n); /* sign-extend */
    m->pos += (size_t)n;
    int64_t i;
    memcpy(&i, &u, sizeof i);
    return push_int(m, i);
}

static int push_global(bc__pickle *m, const char *module, size_t module_len, const char *name, size_t name_len) {
    const bc__pickle_global *g = find_global(module, module_len, name, name_len);
    if (g == NULL)
        return FAIL(m,
                    "forbidden global '%.*s.%.*s' (only state dicts of tensors can be read; a general "
                    "unpickler would import and call it)",
                    STR_ARG(module, module_len), STR_ARG(name, name_len));
    bc__pv *v = new_value(m, BC__PV_GLOBAL);
    if (v != NULL) v->u.global = g;
    return push(m, v);
}

/* GLOBAL's arguments: "module\nname\n". */
static int read_line(bc__pickle *m, const char **s, size_t *len) {
    *s = NULL;
    *len = 0;
    const uint8_t *start = m->data + m->pos;
    const uint8_t *nl = memchr(start, '\n', m->len - m->pos);
    if (nl == NULL) return FAIL(m, "GLOBAL: its name has no terminating newline (truncated?)");
    *s = (const char *)start;
    *len = (size_t)(nl - start);
    m->pos += *len + 1;
    return 0;
}

static int memo_put(bc__pickle *m, const char *op, uint64_t index) {
    bc__pv *v = NULL;
    if (peek(m, op, &v) != 0) return -1;
    if (index >= MAX_MEMO)
        return FAIL(m, "%s: memo index %llu exceeds the limit of %u entries", op, (ull)index, MAX_MEMO);
    if (index >= m->cap_memo) {
        size_t cap = m->cap_memo ? m->cap_memo : 64;
        while (cap <= index) cap *= 2;
        bc__pv **p = realloc(m->memo, cap * sizeof *p);
        if (p == NULL) return vm_fail(m, BC_STATUS_ERROR_MEMORY, "out of memory");
        memset(p + m->cap_memo, 0, (cap - m->cap_memo) * sizeof *p);
        m->memo = p;
        m->cap_memo = cap;
    }
    if (m->memo[index] == NULL) m->n_memo++;
    m->memo[index] = v;
    return 0;
}

static int memo_get(bc__pickle *m, const char *op, uint64_t index) {
    if (index >= m->cap_memo || m->memo[index] == NULL)
        return FAIL(m, "%s: memo index %llu was never stored", op, (ull)index);
    return push(m, m->memo[index]);
}

/* A tuple of the n values on top of the stack, which it pops. */
static int make_tuple(bc__pickle *m, const char *op, size_t n) {
    if (m->n_stack - fence(m) < n) return underflow(m, op);
    bc__pv *t = new_value(m, BC__PV_TUPLE);
    if (t == NULL) return -1;
    if (n > 0) {
        t->u.seq.items = bc__pickle_alloc(m, n * sizeof *t->u.seq.items);
        if (t->u.seq.items == NULL) return -1;
        memcpy(t->u.seq.items, m->stack + m->n_stack - n, n * sizeof *t->u.seq.items);
    }
    t->u.seq.n = t->u.seq.cap = n;
    m->n_stack -= n;
    return push(m, t);
}

/* Appends the values stack[from..n_stack) to the list at stack[from-1]. */
static int append_items(bc__pickle *m, const char *op, size_t from) {
    if (from == 0 || from - 1 < fence(m)) return underflow(m, op);
    bc__pv *list = m->stack[from - 1];
    if (list->kind != BC__PV_LIST)
        return FAIL(m, "%s on %s (only lists can be appended to)", op, bc__pv_kind_name(list->kind));
    size_t n = m->n_stack - from;
    if (n == 0) return 0; /* MARK APPENDS: nothing to add, and items may still be NULL */
    if (reserve(m, &list->u.seq.items, &list->u.seq.cap, list->u.seq.n, list->u.seq.n + n) != 0) return -1;
    memcpy(list->u.seq.items + list->u.seq.n, m->stack + from, n * sizeof(bc__pv *));
    list->u.seq.n += n;
    m->n_stack = from;
    return 0;
}

/* Adds the pairs stack[from..n_stack) to the dict at stack[from-1]. */
static int set_items(bc__pickle *m, const char *op, size_t from) {
    if (from == 0 || from - 1 < fence(m)) return underflow(m, op);
    bc__pv *dict = m->stack[from - 1];
    if (dict->kind != BC__PV_DICT) return FAIL(m, "%s on %s (only dicts take items)", op, bc__pv_kind_name(dict->kind));
    size_t n = m->n_stack - from;
    if (n % 2 != 0) return FAIL(m, "%s: a key without a value (%zu values above the dict)", op, n);
    if (n == 0) return 0; /* MARK SETITEMS: nothing to add, and kv may still be NULL */
    size_t cap = dict->u.dict.cap * 2;
    if (reserve(m, &dict->u.dict.kv, &cap, dict->u.dict.n * 2, dict->u.dict.n * 2 + n) != 0) return -1;
    dict->u.dict.cap = cap / 2;
    memcpy(dict->u.dict.kv + dict->u.dict.n * 2, m->stack + from, n * sizeof(bc__pv *));
    dict->u.dict.n += n / 2;
    m->n_stack = from;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Persistent ids                                                           */
/* ------------------------------------------------------------------------ */

/* BINPERSID: torch.save writes ('storage', storage_type, key, location,
 * numel) for each storage; the bytes are the entry <prefix>/data/<key>. */
static int persistent_load(bc__pickle *m, const bc__pv *pid) {
    static const char *const what = "a persistent id must be ('storage', type, key, location, numel)";
    if (pid->kind != BC__PV_TUPLE || pid->u.seq.n != 5)
        return FAIL(m, "BINPERSID: %s, found %s", what, bc__pv_kind_name(pid->kind));
    bc__pv *const *it = pid->u.seq.items;
    if (it[0]->kind != BC__PV_STR || !str_is(it[0]->u.str.s, it[0]->u.str.len, "storage"))
        return FAIL(m, "BINPERSID: %s; the first item is not 'storage'", what);
    if (it[1]->kind != BC__PV_GLOBAL || it[1]->u.global->kind != BC__GLOBAL_STORAGE)
        return FAIL(m, "BINPERSID: %s; the type is %s, not a torch storage class", what, bc__pv_kind_name(it[1]->kind));
    if (it[2]->kind != BC__PV_STR || it[3]->kind != BC__PV_STR || it[4]->kind != BC__PV_INT || it[4]->u.i < 0)
        return FAIL(m, "BINPERSID: %s; key and location must be str and numel a non-negative int", what);

    const bc__pickle_global *type = it[1]->u.global;
    const char *key = it[2]->u.str.s;
    size_t key_len = it[2]->u.str.len;
    uint64_t numel = (uint64_t)it[4]->u.i, n_bytes;
    if (bc__mul_u64(numel, type->elem_size, &n_bytes) != 0)
        return FAIL(m, "storage '%.*s': %llu elements of torch.%s overflow a byte count", STR_ARG(key, key_len),
                    (ull)numel, type->name);

    /* The entry name "<prefix>/data/<key>". */
    const bc__zip_entry *entry = NULL;
    size_t name_len = m->prefix_len + 6 + key_len;
    if (key_len <= BC__ZIP_MAX_NAME && name_len <= BC__ZIP_MAX_NAME) {
        char *name = bc__pickle_alloc(m, name_len);
        if (name == NULL) return -1;
        memcpy(name, m->prefix, m->prefix_len);
        memcpy(name + m->prefix_len, "/data/", 6);
        memcpy(name + m->prefix_len + 6, key, key_len);
        entry = bc__zip_find(m->zip, name, name_len);
    }
    if (entry == NULL)
        return FAIL(m, "storage '%.*s' is missing: the archive has no entry '%.*s/data/%.*s'", STR_ARG(key, key_len),
                    STR_ARG(m->prefix, m->prefix_len), STR_ARG(key, key_len));
    uint64_t offset = 0;
    if (bc__zip_entry_data(m->zip, entry, &offset, m->err) != 0) return -1;
    if (entry->size < n_bytes)
        return FAIL(m,
                    "storage '%.*s' declares %llu elements of torch.%s (%llu bytes), but its entry '%.*s' "
                    "holds only %llu bytes",
                    STR_ARG(key, key_len), (ull)numel, type->name, (ull)n_bytes, STR_ARG(entry->name, entry->name_len),
                    (ull)entry->size);

    bc__pv *v = new_value(m, BC__PV_STORAGE);
    if (v == NULL) return -1;
    v->u.storage.type = type;
    v->u.storage.key = key;
    v->u.storage.key_len = key_len;
    v->u.storage.numel = numel;
    v->u.storage.file_offset = offset;
    return push(m, v);
}

/* ------------------------------------------------------------------------ */
/* Calls                                                                    */
/* ------------------------------------------------------------------------ */

static int is_int_tuple(const bc__pv *v) {
    if (v->kind != BC__PV_TUPLE) return 0;
    for (size_t i = 0; i < v->u.seq.n; i++)
        if (v->u.seq.items[i]->kind != BC__PV_INT) return 0;
    return 1;
}

/* REDUCE: callable(*args) for the three callables this machine interprets. */
static int reduce(bc__pickle *m, const bc__pv *callable, const bc__pv *args) {
    if (callable->kind != BC__PV_GLOBAL)
        return FAIL(m, "REDUCE: cannot call %s (only known globals are interpreted)", bc__pv_kind_name(callable->kind));
    const bc__pickle_global *g = callable->u.global;
    if (args->kind != BC__PV_TUPLE)
        return FAIL(m, "REDUCE: the arguments to %s.%s are %s, not a tuple", g->module, g->name,
                    bc__pv_kind_name(args->kind));
    bc__pv *const *a = args->u.seq.items;
    size_t n = args->u.seq.n;

    switch (g->kind) {
    case BC__GLOBAL_ORDERED_DICT: {
        if (n != 0)
            return FAIL(m,
                        "REDUCE: collections.OrderedDict called with %zu arguments (only an empty one is "
                        "supported)",
                        n);
        bc__pv *d = new_value(m, BC__PV_DICT);
        if (d != NULL) d->u.dict.ordered = 1;
        return push(m, d);
    }
    case BC__GLOBAL_REBUILD_TENSOR_V2: {
        /* (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
        if (n != 6 && n != 7)
            return FAIL(m, "REDUCE: torch._utils._rebuild_tensor_v2 takes 6 or 7 arguments, found %zu", n);
        if (a[0]->kind != BC__PV_STORAGE)
            return FAIL(m, "REDUCE: _rebuild_tensor_v2's storage is %s, not a storage", bc__pv_kind_name(a[0]->kind));
        if (a[1]->kind != BC__PV_INT)
            return FAIL(m, "REDUCE: _rebuild_tensor_v2's storage offset is %s, not an int",
                        bc__pv_kind_name(a[1]->kind));
        if (!is_int_tuple(a[2]) || !is_int_tuple(a[3]))
            return FAIL(m, "REDUCE: _rebuild_tensor_v2's size and stride must be tuples of ints");
        /* requires_grad, backward_hooks and metadata do not change the bytes. */
        bc__pv *t = new_value(m, BC__PV_TENSOR);
        if (t == NULL) return -1;
        t->u.tensor.storage = a[0];
        t->u.tensor.offset = a[1];
        t->u.tensor.size = a[2];
        t->u.tensor.stride = a[3];
        return push(m, t);
    }
    case BC__GLOBAL_REBUILD_PARAMETER:
        /* (data, requires_grad, backward_hooks): a Parameter is its tensor. */
        if (n != 3 || a[0]->kind != BC__PV_TENSOR)
            return FAIL(m, "REDUCE: torch._utils._rebuild_parameter takes (tensor, requires_grad, "
                           "backward_hooks)");
        return push(m, a[0]);
    case BC__GLOBAL_SIZE:
        /* torch.Size pickles as Size((d0, d1, ...)): the shape is the tuple. */
        if (n != 1 || !is_int_tuple(a[0]))
            return FAIL(m, "REDUCE: torch.Size takes one tuple of ints, found %zu arguments", n);
        return push(m, a[0]);
    case BC__GLOBAL_STORAGE:
    case BC__GLOBAL_DTYPE: break;
    }
    return FAIL(m, "REDUCE: calling %s.%s is not supported", g->module, g->name);
}

/* BUILD: state dicts pickle as OrderedDict plus their instance attributes
 * ({'_metadata': ...}), which say nothing about the tensors. */
static int build(bc__pickle *m) {
    bc__pv *state = NULL, *target = NULL;
    if (pop(m, "BUILD", &state) != 0 || peek(m, "BUILD", &target) != 0) return -1;
    if (target->kind != BC__PV_DICT || !target->u.dict.ordered)
        return FAIL(m, "BUILD on %s (only an OrderedDict's attributes are accepted)", bc__pv_kind_name(target->kind));
    if (state->kind != BC__PV_DICT)
        return FAIL(m, "BUILD: an OrderedDict's state is %s, not a dict", bc__pv_kind_name(state->kind));
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Interpreter                                                              */
/* ------------------------------------------------------------------------ */

enum {
    OP_MARK = '(',
    OP_STOP = '.',
    OP_BININT = 'J',
    OP_BININT1 = 'K',
    OP_BININT2 = 'M',
    OP_NONE = 'N',
    OP_BINPERSID = 'Q',
    OP_REDUCE = 'R',
    OP_BINUNICODE = 'X',
    OP_APPEND = 'a',
    OP_BUILD = 'b',
    OP_GLOBAL = 'c',
    OP_EMPTY_DICT = '}',
    OP_APPENDS = 'e',
    OP_BINGET = 'h',
    OP_LONG_BINGET = 'j',
    OP_EMPTY_LIST = ']',
    OP_BINPUT = 'q',
    OP_LONG_BINPUT = 'r',
    OP_SETITEM = 's',
    OP_TUPLE = 't',
    OP_EMPTY_TUPLE = ')',
    OP_SETITEMS = 'u',
    OP_BINFLOAT = 'G',
    OP_BINBYTES = 'B',
    OP_SHORT_BINBYTES = 'C',
    OP_PROTO = 0x80,
    OP_TUPLE1 = 0x85,
    OP_TUPLE2 = 0x86,
    OP_TUPLE3 = 0x87,
    OP_NEWTRUE = 0x88,
    OP_NEWFALSE = 0x89,
    OP_LONG1 = 0x8a,
    OP_LONG4 = 0x8b,
    OP_SHORT_BINUNICODE = 0x8c,
    OP_BINUNICODE8 = 0x8d,
    OP_BINBYTES8 = 0x8e,
    OP_STACK_GLOBAL = 0x93,
    OP_MEMOIZE = 0x94,
    OP_FRAME = 0x95,
};

/* Names of the pickle opcodes this machine refuses, for messages. */
static const char *refused_opcode_name(uint8_t op) {
    switch (op) {
    case '0': return "POP";
    case '1': return "POP_MARK";
    case '2': return "DUP";
    case 'F': return "FLOAT";
    case 'I': return "INT";
    case 'L': return "LONG";
    case 'P': return "PERSID";
    case 'S': return "STRING";
    case 'T': return "BINSTRING";
    case 'U': return "SHORT_BINSTRING";
    case 'V': return "UNICODE";
    case 'd': return "DICT";
    case 'g': return "GET";
    case 'i': return "INST";
    case 'l': return "LIST";
    case 'o': return "OBJ";
    case 'p': return "PUT";
    case 0x81: return "NEWOBJ";
    case 0x82: return "EXT1";
    case 0x83: return "EXT2";
    case 0x84: return "EXT4";
    case 0x8f: return "EMPTY_SET";
    case 0x90: return "ADDITEMS";
    case 0x91: return "FROZENSET";
    case 0x92: return "NEWOBJ_EX";
    case 0x96: return "BYTEARRAY8";
    case 0x97: return "NEXT_BUFFER";
    case 0x98: return "READONLY_BUFFER";
    }
    return NULL;
}

int bc__pickle_run(bc__pickle *m, bc__pv **result) {
    *result = NULL;
    for (;;) {
        m->op_offset = m->pos;
        if (m->pos >= m->len) return FAIL(m, "the pickle ends without a STOP opcode (truncated?)");
        uint8_t op = m->data[m->pos++];
        uint64_t u = 0;
        bc__pv *a = NULL, *b = NULL;
        size_t at = 0;
        int rc = 0;

        switch (op) {
        case OP_PROTO:
            rc = read_u8(m, "PROTO", &u);
            if (rc == 0 && u > 5) rc = FAIL(m, "unsupported pickle protocol %llu (at most 5)", (ull)u);
            break;
        case OP_FRAME:
            /* Frames only group opcodes for buffered reading; their contents run as usual. */
            rc = read_u64(m, "FRAME", &u);
            if (rc == 0 && u > m->len - m->pos)
                rc = FAIL(m, "FRAME of %llu bytes runs past the end (%llu bytes remain; truncated?)", (ull)u,
                          (ull)(m->len - m->pos));
            break;
        case OP_STOP:
            if (m->n_marks != 0) return FAIL(m, "STOP with %zu MARKs still open", m->n_marks);
            if (m->n_stack != 1) return FAIL(m, "STOP with %zu values on the stack (1 expected)", m->n_stack);
            *result = m->stack[0];
            return 0;

        /* Constants. */
        case OP_NONE: rc = push(m, &m->none); break;
        case OP_NEWTRUE: rc = push(m, &m->yes); break;
        case OP_NEWFALSE: rc = push(m, &m->no); break;
        case OP_BININT:
            rc = read_u32(m, "BININT", &u);
            if (rc == 0) rc = push_int(m, (int32_t)(uint32_t)u);
            break;
        case OP_BININT1:
            rc = read_u8(m, "BININT1", &u);
            if (rc == 0) rc = push_int(m, (int64_t)u);
            break;
        case OP_BININT2:
            rc = read_u16(m, "BININT2", &u);
            if (rc == 0) rc = push_int(m, (int64_t)u);
            break;
        case OP_LONG1:
            rc = read_u8(m, "LONG1", &u);
            if (rc == 0) rc = push_long(m, "LONG1", u);
            break;
        case OP_LONG4:
            rc = read_u32(m, "LONG4", &u);
            if (rc == 0 && (u & 0x80000000u)) rc = FAIL(m, "LONG4 with a negative length");
            if (rc == 0) rc = push_long(m, "LONG4", u);
            break;
        case OP_BINFLOAT:
            /* The one big-endian field in a pickle. */
            rc = need(m, "BINFLOAT", 8);
            if (rc == 0) {
                uint64_t bits = 0;
                for (int i = 0; i < 8; i++) bits = bits << 8 | m->data[m->pos + (size_t)i];
                m->pos += 8;
                bc__pv *v = new_value(m, BC__PV_FLOAT);
                if (v != NULL) memcpy(&v->u.f, &bits, sizeof v->u.f);
                rc = push(m, v);
            }
            break;
        case OP_SHORT_BINUNICODE:
            rc = read_u8(m, "SHORT_BINUNICODE", &u);
            if (rc == 0) rc = push_string(m, "SHORT_BINUNICODE", BC__PV_STR, u);
            break;
        case OP_BINUNICODE:
            rc = read_u32(m, "BINUNICODE", &u);
            if (rc == 0) rc = push_string(m, "BINUNICODE", BC__PV_STR, u);
            break;
        case OP_BINUNICODE8:
            rc = read_u64(m, "BINUNICODE8", &u);
            if (rc == 0) rc = push_string(m, "BINUNICODE8", BC__PV_STR, u);
            break;
        case OP_SHORT_BINBYTES:
            rc = read_u8(m, "SHORT_BINBYTES", &u);
            if (rc == 0) rc = push_string(m, "SHORT_BINBYTES", BC__PV_BYTES, u);
            break;
        case OP_BINBYTES:
            rc = read_u32(m, "BINBYTES", &u);
            if (rc == 0) rc = push_string(m, "BINBYTES", BC__PV_BYTES, u);
            break;
        case OP_BINBYTES8:
            rc = read_u64(m, "BINBYTES8", &u);
            if (rc == 0) rc = push_string(m, "BINBYTES8", BC__PV_BYTES, u);
            break;

        /* Globals. */
        case OP_GLOBAL: {
            const char *module, *name;
            size_t module_len, name_len;
            rc = read_line(m, &module, &module_len);
            if (rc == 0) rc = read_line(m, &name, &name_len);
            if (rc == 0) rc = push_global(m, module, module_len, name, name_len);
            break;
        }
        case OP_STACK_GLOBAL:
            rc = pop(m, "STACK_GLOBAL", &b);
            if (rc == 0) rc = pop(m, "STACK_GLOBAL", &a);
            if (rc == 0 && (a->kind != BC__PV_STR || b->kind != BC__PV_STR))
                rc = FAIL(m, "STACK_GLOBAL: module and name must be str, found %s and %s", bc__pv_kind_name(a->kind),
                          bc__pv_kind_name(b->kind));
            if (rc == 0) rc = push_global(m, a->u.str.s, a->u.str.len, b->u.str.s, b->u.str.len);
            break;

        /* Containers. */
        case OP_MARK:
            if (m->n_marks >= BC__PICKLE_MAX_MARKS) {
                rc = FAIL(m, "MARKs nest deeper than the limit of %u", BC__PICKLE_MAX_MARKS);
            } else {
                m->marks[m->n_marks++] = m->n_stack;
                rc = 0;
            }
            break;
        case OP_EMPTY_TUPLE: rc = make_tuple(m, "EMPTY_TUPLE", 0); break;
        case OP_TUPLE1: rc = make_tuple(m, "TUPLE1", 1); break;
        case OP_TUPLE2: rc = make_tuple(m, "TUPLE2", 2); break;
        case OP_TUPLE3: rc = make_tuple(m, "TUPLE3", 3); break;
        case OP_TUPLE:
            rc = pop_mark(m, "TUPLE", &at);
            if (rc == 0) rc = make_tuple(m, "TUPLE", m->n_stack - at);
            break;
        case OP_EMPTY_LIST: rc = push(m, new_value(m, BC__PV_LIST)); break;
        case OP_EMPTY_DICT: rc = push(m, new_value(m, BC__PV_DICT)); break;
        case OP_APPEND:
            rc = m->n_stack > fence(m) ? append_items(m, "APPEND", m->n_stack - 1) : underflow(m, "APPEND");
            break;
        case OP_APPENDS:
            rc = pop_mark(m, "APPENDS", &at);
            if (rc == 0) rc = append_items(m, "APPENDS", at);
            break;
        case OP_SETITEM:
            rc = m->n_stack >= fence(m) + 2 ? set_items(m, "SETITEM", m->n_stack - 2) : underflow(m, "SETITEM");
            break;
        case OP_SETITEMS:
            rc = pop_mark(m, "SETITEMS", &at);
            if (rc == 0) rc = set_items(m, "SETITEMS", at);
            break;

        /* Memo. */
        case OP_BINPUT:
            rc = read_u8(m, "BINPUT", &u);
            if (rc == 0) rc = memo_put(m, "BINPUT", u);
            break;
        case OP_LONG_BINPUT:
            rc = read_u32(m, "LONG_BINPUT", &u);
            if (rc == 0) rc = memo_put(m, "LONG_BINPUT", u);
            break;
        case OP_MEMOIZE: rc = memo_put(m, "MEMOIZE", m->n_memo); break;
        case OP_BINGET:
            rc = read_u8(m, "BINGET", &u);
            if (rc == 0) rc = memo_get(m, "BINGET", u);
            break;
        case OP_LONG_BINGET:
            rc = read_u32(m, "LONG_BINGET", &u);
            if (rc == 0) rc = memo_get(m, "LONG_BINGET", u);
            break;

        /* Objects. */
        case OP_BINPERSID:
            rc = pop(m, "BINPERSID", &a);
            if (rc == 0) rc = persistent_load(m, a);
            break;
        case OP_REDUCE:
            rc = pop(m, "REDUCE", &b);
            if (rc == 0) rc = pop(m, "REDUCE", &a);
            if (rc == 0) rc = reduce(m, a, b);
            break;
        case OP_BUILD: rc = build(m); break;

        default: {
            const char *name = refused_opcode_name(op);
            if (name != NULL) return FAIL(m, "unsupported pickle opcode 0x%02x (%s)", op, name);
            return FAIL(m, "unknown pickle opcode 0x%02x", op);
        }
        }
        if (rc != 0) return -1;
    }
}
