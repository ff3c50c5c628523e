/*
 * torch_pickle.c - PyTorch checkpoints: a restricted pickle machine over data.pkl.
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
 *   values                 the pickle objects this machine can represent
 *   globals                the closed list of names a pickle may refer to
 *   machine                stack, marks, memo, errors
 *   opcodes                helpers for the opcodes with arguments
 *   persistent ids         storages: ('storage', type, key, location, numel)
 *   calls                  REDUCE on OrderedDict, _rebuild_tensor_v2, _rebuild_parameter, torch.Size
 *   interpreter            the opcode loop
 *   state dict             from the unpickled dict to named, checked tensors
 *                          (and bitsandbytes 4-bit quant state lists)
 *   entry point            bc__torch_read
 *
 * Opcode facts follow CPython's Lib/pickletools.py; nothing here is copied
 * from an unpickler.
 */
#include "formats/torch.h"
#include "formats/torch_zip.h"

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
 * and a dozen values per tensor. The limits leave a wide margin. */
#define MAX_STACK       (1u << 20)          /* values on the stack at once */
#define MAX_MARKS       256u                /* nested MARKs */
#define MAX_MEMO        (1u << 20)          /* memo indices 0 .. MAX_MEMO-1 */
#define MAX_VALUES      (1u << 22)          /* values created in total */
#define MAX_ARENA_BYTES ((size_t)256 << 20) /* bytes held by the arena */
#define MAX_TENSORS     (1u << 16)          /* tensors in one file; the table checks names linearly */

/* At most this many bytes of a string from the file go into a message. */
#define MSG_STR 200

/* printf arguments for a (pointer, length) string, clamped for messages. */
#define STR_ARG(s, len) (int)((len) < MSG_STR ? (len) : MSG_STR), (s)

/* ------------------------------------------------------------------------ */
/* Arena                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct arena_chunk {
    struct arena_chunk *next; /* The chunk allocated before this one. */
    size_t used;              /* Bytes of data handed out so far. */
    size_t cap;               /* Bytes of data in this chunk. */
    max_align_t data[];       /* The bytes themselves, aligned for any type. */
} arena_chunk;

typedef struct arena {
    arena_chunk *head; /* The chunk allocations come from; NULL before the first. */
    size_t total;      /* Bytes of data in all chunks, checked against MAX_ARENA_BYTES. */
} arena;

#define ARENA_ALIGN sizeof(max_align_t)
#define ARENA_CHUNK ((size_t)64 << 10)

/* Returns n bytes, or NULL with *over_limit set when the arena would pass
 * its limit (and clear when malloc failed). */
static void *arena_alloc(arena *a, size_t n, int *over_limit) {
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

static void arena_free(arena *a) {
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

typedef enum pv_kind {
    PV_NONE,
    PV_BOOL,
    PV_INT,
    PV_FLOAT,
    PV_STR,
    PV_BYTES,
    PV_TUPLE,
    PV_LIST,
    PV_DICT,
    PV_GLOBAL,
    PV_STORAGE,
    PV_TENSOR,
} pv_kind;

/* The kind with its article, for messages: "an int", "a list". */
static const char *kind_name(pv_kind kind) {
    switch (kind) {
    case PV_NONE: return "None";
    case PV_BOOL: return "a bool";
    case PV_INT: return "an int";
    case PV_FLOAT: return "a float";
    case PV_STR: return "a str";
    case PV_BYTES: return "a bytes";
    case PV_TUPLE: return "a tuple";
    case PV_LIST: return "a list";
    case PV_DICT: return "a dict";
    case PV_GLOBAL: return "a global";
    case PV_STORAGE: return "a storage";
    case PV_TENSOR: return "a tensor";
    }
    return "?";
}

typedef enum global_kind {
    GLOBAL_ORDERED_DICT,
    GLOBAL_REBUILD_TENSOR_V2,
    GLOBAL_REBUILD_PARAMETER,
    GLOBAL_STORAGE,
    GLOBAL_SIZE,  /* torch.Size: REDUCE on a tuple of ints gives the tuple */
    GLOBAL_DTYPE, /* torch.float16 and kin: a value, never called */
} global_kind;

/* One name a pickle may refer to with GLOBAL or STACK_GLOBAL. */
typedef struct known_global {
    const char *module; /* Python module, e.g. "torch._utils". */
    const char *name;   /* Attribute in it, e.g. "_rebuild_tensor_v2". */
    global_kind kind;   /* What the machine does with it. */
    int supported;      /* For storages: whether tensors of this type can be loaded: 1 as
                         * dtype, 2 as a foreign dtype (foreign_name: the bitsandbytes
                         * 4-bit codes, GPTQ's packed int32). */
    bc_dtype dtype;     /* For supported storages: the element type. */
    unsigned elem_size; /* For storages: bytes per element. */
} known_global;

typedef struct pv pv;

/* A pickle value. Values live in the arena and are shared by reference, as
 * in Python: the memo and containers hold pointers, so a dict filled after
 * it was memoized is seen filled through every reference. Nothing walks
 * values recursively, so reference cycles are harmless. */
struct pv {
    pv_kind kind; /* Which member of u is valid. */
    union {
        int64_t i; /* PV_BOOL (0 or 1) and PV_INT. */
        double f;  /* PV_FLOAT. */
        struct {
            const char *s; /* PV_STR (UTF-8) and PV_BYTES: points into data.pkl. */
            size_t len;    /* Bytes, not characters. */
        } str;
        struct {
            pv **items; /* PV_TUPLE and PV_LIST elements, in the arena. */
            size_t n;   /* Elements in use. */
            size_t cap; /* Elements allocated (lists grow). */
        } seq;
        struct {
            pv **kv;     /* 2*n pointers: key 0, value 0, key 1, value 1, ... in insertion order. */
            size_t n;    /* Pairs in use; a repeated key is caught when tensors are named. */
            size_t cap;  /* Pairs allocated. */
            int ordered; /* Made by collections.OrderedDict(), the only dict BUILD may target. */
        } dict;
        const known_global *global; /* PV_GLOBAL. */
        struct {
            const known_global *type; /* The storage class, e.g. torch.BFloat16Storage. */
            const char *key;          /* The storage's key: its entry is <prefix>/data/<key>. */
            size_t key_len;           /* Bytes of key. */
            uint64_t numel;           /* Elements the persistent id declares. */
            uint64_t file_offset;     /* Absolute offset of the storage's first byte. */
        } storage;
        struct {
            const pv *storage; /* A PV_STORAGE. */
            const pv *offset;  /* A PV_INT: the first element, in storage elements. */
            const pv *size;    /* A PV_TUPLE: the shape. Checked when the tensor is named. */
            const pv *stride;  /* A PV_TUPLE: strides in elements. Checked when named. */
        } tensor;
    } u;
};

/* ------------------------------------------------------------------------ */
/* Globals                                                                  */
/* ------------------------------------------------------------------------ */

/* Everything a pickle may name. Unsupported storage types are known so that a
 * tensor of, say, float64 fails with a clear message naming the tensor rather
 * than as a forbidden global. */
static const known_global known_globals[] = {
    {"collections", "OrderedDict", GLOBAL_ORDERED_DICT, 0, BC_DTYPE_F32, 0},
    {"torch._utils", "_rebuild_tensor_v2", GLOBAL_REBUILD_TENSOR_V2, 0, BC_DTYPE_F32, 0},
    {"torch._utils", "_rebuild_parameter", GLOBAL_REBUILD_PARAMETER, 0, BC_DTYPE_F32, 0},
    {"torch", "FloatStorage", GLOBAL_STORAGE, 1, BC_DTYPE_F32, 4},
    {"torch", "HalfStorage", GLOBAL_STORAGE, 1, BC_DTYPE_F16, 2},
    {"torch", "BFloat16Storage", GLOBAL_STORAGE, 1, BC_DTYPE_BF16, 2},
    {"torch", "DoubleStorage", GLOBAL_STORAGE, 0, BC_DTYPE_F32, 8},
    {"torch", "LongStorage", GLOBAL_STORAGE, 0, BC_DTYPE_F32, 8},
    {"torch", "IntStorage", GLOBAL_STORAGE, 2, BC_DTYPE_COUNT, 4},
    {"torch", "ShortStorage", GLOBAL_STORAGE, 0, BC_DTYPE_F32, 2},
    {"torch", "CharStorage", GLOBAL_STORAGE, 0, BC_DTYPE_F32, 1},
    {"torch", "ByteStorage", GLOBAL_STORAGE, 2, BC_DTYPE_COUNT, 1},
    {"torch", "BoolStorage", GLOBAL_STORAGE, 0, BC_DTYPE_F32, 1},
    {"torch", "ComplexFloatStorage", GLOBAL_STORAGE, 0, BC_DTYPE_F32, 8},
    {"torch", "ComplexDoubleStorage", GLOBAL_STORAGE, 0, BC_DTYPE_F32, 16},
    /* The scalars of bitsandbytes 4-bit quant states (Baichuan2 4bits). */
    {"torch", "Size", GLOBAL_SIZE, 0, BC_DTYPE_F32, 0},
    {"torch", "float16", GLOBAL_DTYPE, 0, BC_DTYPE_F16, 2},
    {"torch", "bfloat16", GLOBAL_DTYPE, 0, BC_DTYPE_BF16, 2},
    {"torch", "float32", GLOBAL_DTYPE, 0, BC_DTYPE_F32, 4},
};

static int str_is(const char *s, size_t len, const char *lit) { return strlen(lit) == len && memcmp(s, lit, len) == 0; }

/* The safetensors name of a storage kept as a foreign dtype (supported 2). */
static const char *foreign_name(const known_global *g) { return g->elem_size == 1 ? "U8" : "I32"; }

static const known_global *find_global(const char *module, size_t module_len, const char *name, size_t name_len) {
    for (size_t i = 0; i < sizeof known_globals / sizeof known_globals[0]; i++) {
        const known_global *g = &known_globals[i];
        if (str_is(module, module_len, g->module) && str_is(name, name_len, g->name)) return g;
    }
    return NULL;
}

/* ------------------------------------------------------------------------ */
/* Machine                                                                  */
/* ------------------------------------------------------------------------ */

typedef struct vm {
    const char *path;     /* The checkpoint, first in every message. */
    const bc__zip *zip;   /* The archive, to find storages in. */
    const char *prefix;   /* Entry names start with prefix + "/"; points into the mapping. */
    size_t prefix_len;    /* Bytes of prefix. */
    const char *pkl_name; /* The data.pkl entry's name, for messages; points into the mapping. */
    size_t pkl_name_len;  /* Bytes of pkl_name. */

    const uint8_t *data; /* data.pkl, in the mapping. */
    size_t len;          /* Bytes of data.pkl. */
    size_t pos;          /* The next byte to read. */
    size_t op_offset;    /* Where the opcode being run starts, for messages. */

    pv **stack;              /* The value stack; malloc'd. */
    size_t n_stack;          /* Values on it. */
    size_t cap_stack;        /* Values allocated. */
    size_t marks[MAX_MARKS]; /* Stack heights at each open MARK; nothing may pop below the last. */
    size_t n_marks;          /* Open MARKs. */
    pv **memo;               /* memo[i] is the value stored at index i, or NULL; malloc'd. */
    size_t cap_memo;         /* Indices allocated. */
    size_t n_memo;           /* Indices set: MEMOIZE stores at this index, as Python's len(memo). */

    arena arena;     /* Every value and container array. */
    size_t n_values; /* Values created, checked against MAX_VALUES. */
    pv none;         /* The shared None. */
    pv yes, no;      /* The shared True and False. */

    bc__err *err; /* Where the first error goes. */
} vm;

static int vm_fail(vm *m, bc_status status, const char *fmt, ...) BC__PRINTF(3, 4);

/* Sets an error "<path>: <what> (in <prefix>/data.pkl at offset N)". */
static int vm_fail(vm *m, bc_status status, const char *fmt, ...) {
    char what[768];
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(what, sizeof what, fmt, ap);
    va_end(ap);
    return bc__errorf(m->err, status, "%s: %s (in %.*s at offset %llu)", m->path, what,
                      STR_ARG(m->pkl_name, m->pkl_name_len), (ull)m->op_offset);
}

#define FAIL(m, ...) vm_fail((m), BC_STATUS_ERROR_FORMAT, __VA_ARGS__)

static void *vm_alloc(vm *m, size_t n) {
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

static pv *new_value(vm *m, pv_kind kind) {
    if (m->n_values >= MAX_VALUES) {
        FAIL(m, "the pickle creates more than the limit of %u values", MAX_VALUES);
        return NULL;
    }
    pv *v = vm_alloc(m, sizeof *v);
    if (v == NULL) return NULL;
    memset(v, 0, sizeof *v);
    v->kind = kind;
    m->n_values++;
    return v;
}

/* Makes room for `need` pointers in an arena array of *cap pointers, of
 * which the first n are in use. */
static int reserve(vm *m, pv ***items, size_t *cap, size_t n, size_t need) {
    if (need <= *cap) return 0;
    if (need > MAX_ARENA_BYTES / sizeof(pv *))
        return FAIL(m, "a container of %zu items passes the limit of %zu MiB of memory", need, MAX_ARENA_BYTES >> 20);
    size_t new_cap = *cap ? *cap : 4;
    while (new_cap < need) new_cap *= 2;
    pv **p = vm_alloc(m, new_cap * sizeof *p);
    if (p == NULL) return -1;
    if (n > 0) memcpy(p, *items, n * sizeof *p);
    *items = p;
    *cap = new_cap;
    return 0;
}

static int push(vm *m, pv *v) {
    if (v == NULL) return -1; /* the allocation failed and set the error */
    if (m->n_stack == m->cap_stack) {
        if (m->n_stack >= MAX_STACK) return FAIL(m, "stack depth exceeds the limit of %u values", MAX_STACK);
        size_t cap = m->cap_stack ? m->cap_stack * 2 : 64;
        pv **p = realloc(m->stack, cap * sizeof *p);
        if (p == NULL) return vm_fail(m, BC_STATUS_ERROR_MEMORY, "out of memory");
        m->stack = p;
        m->cap_stack = cap;
    }
    m->stack[m->n_stack++] = v;
    return 0;
}

/* The lowest stack height an opcode may pop to: the last open MARK. */
static size_t fence(const vm *m) { return m->n_marks ? m->marks[m->n_marks - 1] : 0; }

static int underflow(vm *m, const char *op) {
    return FAIL(m, "stack underflow: %s needs a value %s", op,
                m->n_marks ? "above the last MARK" : "but the stack is empty");
}

static int pop(vm *m, const char *op, pv **out) {
    *out = NULL;
    if (m->n_stack <= fence(m)) return underflow(m, op);
    *out = m->stack[--m->n_stack];
    return 0;
}

static int peek(vm *m, const char *op, pv **out) {
    *out = NULL;
    if (m->n_stack <= fence(m)) return underflow(m, op);
    *out = m->stack[m->n_stack - 1];
    return 0;
}

/* Closes the last MARK: *at is the stack height when it was set. */
static int pop_mark(vm *m, const char *op, size_t *at) {
    *at = 0;
    if (m->n_marks == 0) return FAIL(m, "%s without a MARK before it", op);
    *at = m->marks[--m->n_marks];
    return 0;
}

static void vm_free(vm *m) {
    free(m->stack);
    free(m->memo);
    arena_free(&m->arena);
    m->stack = NULL;
    m->memo = NULL;
}

/* ------------------------------------------------------------------------ */
/* Opcodes                                                                  */
/* ------------------------------------------------------------------------ */

/* Checks that n argument bytes follow the opcode. */
static int need(vm *m, const char *op, uint64_t n) {
    if (n > m->len - m->pos)
        return FAIL(m, "%s needs %llu bytes, but only %llu remain (truncated?)", op, (ull)n, (ull)(m->len - m->pos));
    return 0;
}

static int read_u8(vm *m, const char *op, uint64_t *v) {
    *v = 0;
    if (need(m, op, 1) != 0) return -1;
    *v = m->data[m->pos++];
    return 0;
}
static int read_u16(vm *m, const char *op, uint64_t *v) {
    *v = 0;
    if (need(m, op, 2) != 0) return -1;
    *v = bc__le16(m->data + m->pos);
    m->pos += 2;
    return 0;
}
static int read_u32(vm *m, const char *op, uint64_t *v) {
    *v = 0;
    if (need(m, op, 4) != 0) return -1;
    *v = bc__le32(m->data + m->pos);
    m->pos += 4;
    return 0;
}
static int read_u64(vm *m, const char *op, uint64_t *v) {
    *v = 0;
    if (need(m, op, 8) != 0) return -1;
    *v = bc__le64(m->data + m->pos);
    m->pos += 8;
    return 0;
}

/* Pushes an int, a str or bytes of n bytes at the read position. */
static int push_int(vm *m, int64_t i) {
    pv *v = new_value(m, PV_INT);
    if (v != NULL) v->u.i = i;
    return push(m, v);
}

static int push_string(vm *m, const char *op, pv_kind kind, uint64_t n) {
    if (n > m->len - m->pos)
        return FAIL(m, "%s declares %llu bytes, but only %llu remain (truncated?)", op, (ull)n, (ull)(m->len - m->pos));
    pv *v = new_value(m, kind);
    if (v == NULL) return -1;
    v->u.str.s = (const char *)m->data + m->pos;
    v->u.str.len = (size_t)n;
    m->pos += (size_t)n;
    return push(m, v);
}

/* LONG1 and LONG4: n bytes of little-endian two's complement. */
static int push_long(vm *m, const char *op, uint64_t n) {
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

static int push_global(vm *m, const char *module, size_t module_len, const char *name, size_t name_len) {
    const known_global *g = find_global(module, module_len, name, name_len);
    if (g == NULL)
        return FAIL(m,
                    "forbidden global '%.*s.%.*s' (only state dicts of tensors can be read; a general "
                    "unpickler would import and call it)",
                    STR_ARG(module, module_len), STR_ARG(name, name_len));
    pv *v = new_value(m, PV_GLOBAL);
    if (v != NULL) v->u.global = g;
    return push(m, v);
}

/* GLOBAL's arguments: "module\nname\n". */
static int read_line(vm *m, const char **s, size_t *len) {
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

static int memo_put(vm *m, const char *op, uint64_t index) {
    pv *v = NULL;
    if (peek(m, op, &v) != 0) return -1;
    if (index >= MAX_MEMO)
        return FAIL(m, "%s: memo index %llu exceeds the limit of %u entries", op, (ull)index, MAX_MEMO);
    if (index >= m->cap_memo) {
        size_t cap = m->cap_memo ? m->cap_memo : 64;
        while (cap <= index) cap *= 2;
        pv **p = realloc(m->memo, cap * sizeof *p);
        if (p == NULL) return vm_fail(m, BC_STATUS_ERROR_MEMORY, "out of memory");
        memset(p + m->cap_memo, 0, (cap - m->cap_memo) * sizeof *p);
        m->memo = p;
        m->cap_memo = cap;
    }
    if (m->memo[index] == NULL) m->n_memo++;
    m->memo[index] = v;
    return 0;
}

static int memo_get(vm *m, const char *op, uint64_t index) {
    if (index >= m->cap_memo || m->memo[index] == NULL)
        return FAIL(m, "%s: memo index %llu was never stored", op, (ull)index);
    return push(m, m->memo[index]);
}

/* A tuple of the n values on top of the stack, which it pops. */
static int make_tuple(vm *m, const char *op, size_t n) {
    if (m->n_stack - fence(m) < n) return underflow(m, op);
    pv *t = new_value(m, PV_TUPLE);
    if (t == NULL) return -1;
    if (n > 0) {
        t->u.seq.items = vm_alloc(m, n * sizeof *t->u.seq.items);
        if (t->u.seq.items == NULL) return -1;
        memcpy(t->u.seq.items, m->stack + m->n_stack - n, n * sizeof *t->u.seq.items);
    }
    t->u.seq.n = t->u.seq.cap = n;
    m->n_stack -= n;
    return push(m, t);
}

/* Appends the values stack[from..n_stack) to the list at stack[from-1]. */
static int append_items(vm *m, const char *op, size_t from) {
    if (from == 0 || from - 1 < fence(m)) return underflow(m, op);
    pv *list = m->stack[from - 1];
    if (list->kind != PV_LIST) return FAIL(m, "%s on %s (only lists can be appended to)", op, kind_name(list->kind));
    size_t n = m->n_stack - from;
    if (n == 0) return 0; /* MARK APPENDS: nothing to add, and items may still be NULL */
    if (reserve(m, &list->u.seq.items, &list->u.seq.cap, list->u.seq.n, list->u.seq.n + n) != 0) return -1;
    memcpy(list->u.seq.items + list->u.seq.n, m->stack + from, n * sizeof(pv *));
    list->u.seq.n += n;
    m->n_stack = from;
    return 0;
}

/* Adds the pairs stack[from..n_stack) to the dict at stack[from-1]. */
static int set_items(vm *m, const char *op, size_t from) {
    if (from == 0 || from - 1 < fence(m)) return underflow(m, op);
    pv *dict = m->stack[from - 1];
    if (dict->kind != PV_DICT) return FAIL(m, "%s on %s (only dicts take items)", op, kind_name(dict->kind));
    size_t n = m->n_stack - from;
    if (n % 2 != 0) return FAIL(m, "%s: a key without a value (%zu values above the dict)", op, n);
    if (n == 0) return 0; /* MARK SETITEMS: nothing to add, and kv may still be NULL */
    size_t cap = dict->u.dict.cap * 2;
    if (reserve(m, &dict->u.dict.kv, &cap, dict->u.dict.n * 2, dict->u.dict.n * 2 + n) != 0) return -1;
    dict->u.dict.cap = cap / 2;
    memcpy(dict->u.dict.kv + dict->u.dict.n * 2, m->stack + from, n * sizeof(pv *));
    dict->u.dict.n += n / 2;
    m->n_stack = from;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Persistent ids                                                           */
/* ------------------------------------------------------------------------ */

/* BINPERSID: torch.save writes ('storage', storage_type, key, location,
 * numel) for each storage; the bytes are the entry <prefix>/data/<key>. */
static int persistent_load(vm *m, const pv *pid) {
    static const char *const what = "a persistent id must be ('storage', type, key, location, numel)";
    if (pid->kind != PV_TUPLE || pid->u.seq.n != 5)
        return FAIL(m, "BINPERSID: %s, found %s", what, kind_name(pid->kind));
    pv *const *it = pid->u.seq.items;
    if (it[0]->kind != PV_STR || !str_is(it[0]->u.str.s, it[0]->u.str.len, "storage"))
        return FAIL(m, "BINPERSID: %s; the first item is not 'storage'", what);
    if (it[1]->kind != PV_GLOBAL || it[1]->u.global->kind != GLOBAL_STORAGE)
        return FAIL(m, "BINPERSID: %s; the type is %s, not a torch storage class", what, kind_name(it[1]->kind));
    if (it[2]->kind != PV_STR || it[3]->kind != PV_STR || it[4]->kind != PV_INT || it[4]->u.i < 0)
        return FAIL(m, "BINPERSID: %s; key and location must be str and numel a non-negative int", what);

    const known_global *type = it[1]->u.global;
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
        char *name = vm_alloc(m, name_len);
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

    pv *v = new_value(m, PV_STORAGE);
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

static int is_int_tuple(const pv *v) {
    if (v->kind != PV_TUPLE) return 0;
    for (size_t i = 0; i < v->u.seq.n; i++)
        if (v->u.seq.items[i]->kind != PV_INT) return 0;
    return 1;
}

/* REDUCE: callable(*args) for the three callables this machine interprets. */
static int reduce(vm *m, const pv *callable, const pv *args) {
    if (callable->kind != PV_GLOBAL)
        return FAIL(m, "REDUCE: cannot call %s (only known globals are interpreted)", kind_name(callable->kind));
    const known_global *g = callable->u.global;
    if (args->kind != PV_TUPLE)
        return FAIL(m, "REDUCE: the arguments to %s.%s are %s, not a tuple", g->module, g->name, kind_name(args->kind));
    pv *const *a = args->u.seq.items;
    size_t n = args->u.seq.n;

    switch (g->kind) {
    case GLOBAL_ORDERED_DICT: {
        if (n != 0)
            return FAIL(m,
                        "REDUCE: collections.OrderedDict called with %zu arguments (only an empty one is "
                        "supported)",
                        n);
        pv *d = new_value(m, PV_DICT);
        if (d != NULL) d->u.dict.ordered = 1;
        return push(m, d);
    }
    case GLOBAL_REBUILD_TENSOR_V2: {
        /* (storage, storage_offset, size, stride, requires_grad, backward_hooks[, metadata]) */
        if (n != 6 && n != 7)
            return FAIL(m, "REDUCE: torch._utils._rebuild_tensor_v2 takes 6 or 7 arguments, found %zu", n);
        if (a[0]->kind != PV_STORAGE)
            return FAIL(m, "REDUCE: _rebuild_tensor_v2's storage is %s, not a storage", kind_name(a[0]->kind));
        if (a[1]->kind != PV_INT)
            return FAIL(m, "REDUCE: _rebuild_tensor_v2's storage offset is %s, not an int", kind_name(a[1]->kind));
        if (!is_int_tuple(a[2]) || !is_int_tuple(a[3]))
            return FAIL(m, "REDUCE: _rebuild_tensor_v2's size and stride must be tuples of ints");
        /* requires_grad, backward_hooks and metadata do not change the bytes. */
        pv *t = new_value(m, PV_TENSOR);
        if (t == NULL) return -1;
        t->u.tensor.storage = a[0];
        t->u.tensor.offset = a[1];
        t->u.tensor.size = a[2];
        t->u.tensor.stride = a[3];
        return push(m, t);
    }
    case GLOBAL_REBUILD_PARAMETER:
        /* (data, requires_grad, backward_hooks): a Parameter is its tensor. */
        if (n != 3 || a[0]->kind != PV_TENSOR)
            return FAIL(m, "REDUCE: torch._utils._rebuild_parameter takes (tensor, requires_grad, "
                           "backward_hooks)");
        return push(m, a[0]);
    case GLOBAL_SIZE:
        /* torch.Size pickles as Size((d0, d1, ...)): the shape is the tuple. */
        if (n != 1 || !is_int_tuple(a[0]))
            return FAIL(m, "REDUCE: torch.Size takes one tuple of ints, found %zu arguments", n);
        return push(m, a[0]);
    case GLOBAL_STORAGE:
    case GLOBAL_DTYPE: break;
    }
    return FAIL(m, "REDUCE: calling %s.%s is not supported", g->module, g->name);
}

/* BUILD: state dicts pickle as OrderedDict plus their instance attributes
 * ({'_metadata': ...}), which say nothing about the tensors. */
static int build(vm *m) {
    pv *state = NULL, *target = NULL;
    if (pop(m, "BUILD", &state) != 0 || peek(m, "BUILD", &target) != 0) return -1;
    if (target->kind != PV_DICT || !target->u.dict.ordered)
        return FAIL(m, "BUILD on %s (only an OrderedDict's attributes are accepted)", kind_name(target->kind));
    if (state->kind != PV_DICT)
        return FAIL(m, "BUILD: an OrderedDict's state is %s, not a dict", kind_name(state->kind));
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

/* Runs data.pkl to its STOP; *result is the one value left on the stack. */
static int run(vm *m, pv **result) {
    *result = NULL;
    for (;;) {
        m->op_offset = m->pos;
        if (m->pos >= m->len) return FAIL(m, "the pickle ends without a STOP opcode (truncated?)");
        uint8_t op = m->data[m->pos++];
        uint64_t u = 0;
        pv *a = NULL, *b = NULL;
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
                pv *v = new_value(m, PV_FLOAT);
                if (v != NULL) memcpy(&v->u.f, &bits, sizeof v->u.f);
                rc = push(m, v);
            }
            break;
        case OP_SHORT_BINUNICODE:
            rc = read_u8(m, "SHORT_BINUNICODE", &u);
            if (rc == 0) rc = push_string(m, "SHORT_BINUNICODE", PV_STR, u);
            break;
        case OP_BINUNICODE:
            rc = read_u32(m, "BINUNICODE", &u);
            if (rc == 0) rc = push_string(m, "BINUNICODE", PV_STR, u);
            break;
        case OP_BINUNICODE8:
            rc = read_u64(m, "BINUNICODE8", &u);
            if (rc == 0) rc = push_string(m, "BINUNICODE8", PV_STR, u);
            break;
        case OP_SHORT_BINBYTES:
            rc = read_u8(m, "SHORT_BINBYTES", &u);
            if (rc == 0) rc = push_string(m, "SHORT_BINBYTES", PV_BYTES, u);
            break;
        case OP_BINBYTES:
            rc = read_u32(m, "BINBYTES", &u);
            if (rc == 0) rc = push_string(m, "BINBYTES", PV_BYTES, u);
            break;
        case OP_BINBYTES8:
            rc = read_u64(m, "BINBYTES8", &u);
            if (rc == 0) rc = push_string(m, "BINBYTES8", PV_BYTES, u);
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
            if (rc == 0 && (a->kind != PV_STR || b->kind != PV_STR))
                rc = FAIL(m, "STACK_GLOBAL: module and name must be str, found %s and %s", kind_name(a->kind),
                          kind_name(b->kind));
            if (rc == 0) rc = push_global(m, a->u.str.s, a->u.str.len, b->u.str.s, b->u.str.len);
            break;

        /* Containers. */
        case OP_MARK:
            if (m->n_marks >= MAX_MARKS) {
                rc = FAIL(m, "MARKs nest deeper than the limit of %u", MAX_MARKS);
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
        case OP_EMPTY_LIST: rc = push(m, new_value(m, PV_LIST)); break;
        case OP_EMPTY_DICT: rc = push(m, new_value(m, PV_DICT)); break;
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

/* ------------------------------------------------------------------------ */
/* State dict                                                               */
/* ------------------------------------------------------------------------ */

/* One tensor, checked and ready for the table. */
typedef struct tensor_rec {
    const char *name;            /* NUL-terminated copy in the arena. */
    bc_dtype dtype;              /* Element type, from the storage class. */
    int n_dims;                  /* Dimensions, at most BC__MAX_DIMS. */
    int64_t shape[BC__MAX_DIMS]; /* Outermost first. */
    uint64_t file_offset;        /* Absolute offset of the first byte. */
    uint64_t n_bytes;            /* Bytes of the tensor. */
    const char *foreign;         /* "U8" for ByteStorage (dtype unused), else NULL. */
} tensor_rec;

/* "[a, b, c]" for messages; truncated to fit. */
static void format_ints(char *buf, size_t n, const pv *tuple) {
    size_t used = 0;
    int w = snprintf(buf, n, "[");
    for (size_t i = 0; w >= 0 && (size_t)w < n - used && i < tuple->u.seq.n; i++) {
        used += (size_t)w;
        w = snprintf(buf + used, n - used, "%s%lld", i ? ", " : "", (long long)tuple->u.seq.items[i]->u.i);
    }
    if (w >= 0 && (size_t)w < n - used) {
        used += (size_t)w;
        snprintf(buf + used, n - used, "]");
    }
}

/* Checks one tensor of the state dict and fills rec. */
static int check_tensor(vm *m, const char *name, const pv *t, tensor_rec *rec) {
    const char *path = m->path;
    const pv *storage = t->u.tensor.storage;
    const known_global *type = storage->u.storage.type;
    const pv *size = t->u.tensor.size, *stride = t->u.tensor.stride;
    char size_text[160], stride_text[160];
    format_ints(size_text, sizeof size_text, size);
    format_ints(stride_text, sizeof stride_text, stride);

    if (!type->supported)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%.*s': unsupported dtype (storage torch.%s; only FloatStorage, "
                          "HalfStorage, BFloat16Storage, and the ByteStorage / IntStorage of 4-bit checkpoints "
                          "can be read)",
                          path, STR_ARG(name, strlen(name)), type->name);
    if (size->u.seq.n != stride->u.seq.n)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%.*s': size %s and stride %s differ in length",
                          path, STR_ARG(name, strlen(name)), size_text, stride_text);
    if (size->u.seq.n > BC__MAX_DIMS)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%.*s' has %zu dimensions %s (at most %d are supported)", path,
                          STR_ARG(name, strlen(name)), size->u.seq.n, size_text, BC__MAX_DIMS);

    int n_dims = (int)size->u.seq.n;
    uint64_t numel = 1;
    for (int i = 0; i < n_dims; i++) {
        int64_t d = size->u.seq.items[i]->u.i;
        if (d < 0 || bc__mul_u64(numel, (uint64_t)d, &numel) != 0)
            return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, "%s: tensor '%.*s': size %s is negative or overflows",
                              path, STR_ARG(name, strlen(name)), size_text);
        rec->shape[i] = d;
    }

    /* Row-major: the last dimension has stride 1, each other the product of
     * the sizes after it. A dimension of size 1 is never stepped over, so
     * its stride does not matter; nor do any strides of an empty tensor. */
    if (numel > 0) {
        uint64_t expect = 1;
        for (int i = n_dims - 1; i >= 0; i--) {
            int64_t d = size->u.seq.items[i]->u.i, s = stride->u.seq.items[i]->u.i;
            if (d != 1 && (s < 0 || (uint64_t)s != expect))
                return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                                  "%s: tensor '%.*s' is not contiguous (size %s, stride %s); save it with "
                                  ".contiguous()",
                                  path, STR_ARG(name, strlen(name)), size_text, stride_text);
            expect *= (uint64_t)d; /* cannot overflow: the product of all sizes did not */
        }
    }

    int64_t first = t->u.tensor.offset->u.i;
    uint64_t end;
    if (first < 0 || bc__add_u64((uint64_t)first, numel, &end) != 0 || end > storage->u.storage.numel)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                          "%s: tensor '%.*s': its %llu elements from element %lld on lie outside its storage "
                          "'%.*s' of %llu elements",
                          path, STR_ARG(name, strlen(name)), (ull)numel, (long long)first,
                          STR_ARG(storage->u.storage.key, storage->u.storage.key_len), (ull)storage->u.storage.numel);

    /* end <= numel of the storage, whose byte count did not overflow. */
    rec->name = name;
    rec->dtype = type->dtype;
    rec->foreign = type->supported == 2 ? foreign_name(type) : NULL;
    rec->n_dims = n_dims;
    rec->file_offset = storage->u.storage.file_offset + (uint64_t)first * type->elem_size;
    rec->n_bytes = numel * type->elem_size;
    return 0;
}

/* A NUL-terminated copy of prefix + suffix in the arena. */
static char *arena_name(vm *m, const char *prefix, size_t len, const char *suffix) {
    size_t n = strlen(suffix);
    char *name = vm_alloc(m, len + n + 1);
    if (name == NULL) return NULL;
    memcpy(name, prefix, len);
    memcpy(name + len, suffix, n + 1);
    return name;
}

static int ends_with(const char *s, size_t len, const char *suffix) {
    size_t n = strlen(suffix);
    return len >= n && memcmp(s + len - n, suffix, n) == 0;
}

#define QS_SUFFIX ".quant_state"

/* The items of a list or tuple, or NULL. */
static pv *const *seq_items(const pv *v, size_t *n) {
    *n = 0;
    if (v->kind != PV_LIST && v->kind != PV_TUPLE) return NULL;
    *n = v->u.seq.n;
    return v->u.seq.items;
}

/* "<weight>.quant_state" holds a bitsandbytes 4-bit quant state, the list
 * bitsandbytes 0.40/0.41's quantize_4bit builds (functional.py) and
 * Baichuan2's quantizer.py hands to Params4bit:
 *   [absmax, shape, dtype, blocksize, compressed_stats, quant_type(, code)]
 *   compressed_stats: None, or [offset, state2] with state2 the nested
 *   8-bit state [absmax2, code2, blocksize2, ...] of quantize_blockwise.
 * Its tensors become records "<key>.absmax", ".offset", ".absmax2",
 * ".code2" and ".code"; its scalars fill *st. Shapes and sizes are the
 * converter's to check (bnb4.c); here only the structure. */
static int collect_bnb_state(vm *m, const char *key, size_t key_len, const pv *list, tensor_rec *recs, size_t *n_recs,
                             bc__bnb_state *st) {
    const char *path = m->path;
    size_t n = 0, n2 = 0, n3 = 0;
    pv *const *it = seq_items(list, &n), *const *cs = NULL, *const *s2 = NULL;
#define BAD(...) bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, __VA_ARGS__)
    if (n != 6 && n != 7)
        return BAD("%s: '%.*s' is a list of %zu items; a bitsandbytes 4-bit quant state has 6 or 7 (absmax, "
                   "shape, dtype, blocksize, compressed statistics, quant type, code)",
                   path, STR_ARG(key, key_len), n);
    static const char *const item_names[] = {"absmax",     "shape", "dtype", "blocksize", "compressed statistics",
                                             "quant type", "code"};
    static const pv_kind item_kinds[] = {PV_TENSOR, PV_TUPLE, PV_GLOBAL, PV_INT, PV_LIST, PV_STR, PV_TENSOR};
    for (size_t i = 0; i < n; i++) {
        pv_kind k = it[i]->kind;
        bool ok = k == item_kinds[i] || (i == 1 && k == PV_LIST) || (i == 4 && (k == PV_NONE || k == PV_TUPLE));
        if (i == 2) ok = ok && it[i]->u.global->kind == GLOBAL_DTYPE;
        if (!ok)
            return BAD("%s: '%.*s' item %zu (%s) is %s, not %s", path, STR_ARG(key, key_len), i, item_names[i],
                       kind_name(k), i == 2 ? "a torch dtype" : kind_name(item_kinds[i]));
    }
    size_t n_shape = 0;
    pv *const *shape = seq_items(it[1], &n_shape);
    if (n_shape == 0 || n_shape > BC__MAX_DIMS)
        return BAD("%s: '%.*s' shape has %zu dimensions", path, STR_ARG(key, key_len), n_shape);
    for (size_t i = 0; i < n_shape; i++) {
        if (shape[i]->kind != PV_INT || shape[i]->u.i < 0)
            return BAD("%s: '%.*s' shape item %zu is not a non-negative int", path, STR_ARG(key, key_len), i);
        st->shape[i] = shape[i]->u.i;
    }
    st->n_dims = (int)n_shape;
    st->dtype = it[2]->u.global->name;
    st->blocksize = it[3]->u.i;
    if (it[5]->u.str.len >= sizeof st->quant_type || memchr(it[5]->u.str.s, '\0', it[5]->u.str.len) != NULL)
        return BAD("%s: '%.*s' quant type '%.*s' is neither nf4 nor fp4", path, STR_ARG(key, key_len),
                   STR_ARG(it[5]->u.str.s, it[5]->u.str.len));
    memcpy(st->quant_type, it[5]->u.str.s, it[5]->u.str.len);
    st->quant_type[it[5]->u.str.len] = '\0';
    st->nested = it[4]->kind != PV_NONE;
    if (st->nested) {
        cs = seq_items(it[4], &n2);
        if (n2 != 2 || cs[0]->kind != PV_TENSOR || (s2 = seq_items(cs[1], &n3)) == NULL || n3 < 3 ||
            s2[0]->kind != PV_TENSOR || s2[1]->kind != PV_TENSOR || s2[2]->kind != PV_INT)
            return BAD("%s: '%.*s' compressed statistics must be [offset, [absmax2, code2, blocksize2, ...]]", path,
                       STR_ARG(key, key_len));
        st->blocksize2 = s2[2]->u.i;
    }
#undef BAD
    struct {
        const char *suffix;
        const pv *tensor;
    } parts[] = {{".absmax", it[0]},
                 {".offset", st->nested ? cs[0] : NULL},
                 {".absmax2", st->nested ? s2[0] : NULL},
                 {".code2", st->nested ? s2[1] : NULL},
                 {".code", n == 7 ? it[6] : NULL}};
    for (size_t i = 0; i < sizeof parts / sizeof parts[0]; i++) {
        if (parts[i].tensor == NULL) continue;
        char *name = arena_name(m, key, key_len, parts[i].suffix);
        if (name == NULL || check_tensor(m, name, parts[i].tensor, &recs[(*n_recs)++]) != 0) return -1;
    }
    st->weight = arena_name(m, key, key_len - strlen(QS_SUFFIX), "");
    return st->weight == NULL ? -1 : 0;
}

/* Turns the unpickled state dict into checked tensor records (and quant
 * state records). */
static int collect_tensors(vm *m, const pv *root, tensor_rec **out, size_t *n_out, bc__bnb_state **states,
                           size_t *n_states) {
    *out = NULL;
    *n_out = 0;
    *states = NULL;
    *n_states = 0;
    if (root->kind != PV_DICT)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                          "%s: the checkpoint holds %s, not a state dict (a dict of name -> tensor)", m->path,
                          kind_name(root->kind));
    size_t n = root->u.dict.n, n_lists = 0;
    if (n > MAX_TENSORS)
        return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT,
                          "%s: the state dict has %zu entries (the limit is %u per file)", m->path, n, MAX_TENSORS);
    for (size_t i = 0; i < n; i++) n_lists += root->u.dict.kv[2 * i + 1]->kind == PV_LIST;
    /* A quant state adds at most five tensors. */
    tensor_rec *recs = vm_alloc(m, (n + 4 * n_lists + 1) * sizeof *recs);
    bc__bnb_state *bnb = vm_alloc(m, (n_lists + 1) * sizeof *bnb);
    if (recs == NULL || bnb == NULL) return -1;

    size_t n_recs = 0;
    for (size_t i = 0; i < n; i++) {
        const pv *key = root->u.dict.kv[2 * i], *value = root->u.dict.kv[2 * i + 1];
        if (key->kind != PV_STR)
            return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, "%s: state dict key %zu is %s, not a str", m->path, i,
                              kind_name(key->kind));
        if (memchr(key->u.str.s, '\0', key->u.str.len) != NULL)
            return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, "%s: state dict key '%.*s' contains a NUL byte", m->path,
                              STR_ARG(key->u.str.s, key->u.str.len));
        if (value->kind == PV_LIST && ends_with(key->u.str.s, key->u.str.len, QS_SUFFIX)) {
            bc__bnb_state *st = &bnb[(*n_states)++];
            memset(st, 0, sizeof *st);
            if (collect_bnb_state(m, key->u.str.s, key->u.str.len, value, recs, &n_recs, st) != 0) return -1;
            continue;
        }
        if (value->kind != PV_TENSOR)
            return bc__errorf(m->err, BC_STATUS_ERROR_FORMAT, "%s: state dict entry '%.*s' is %s, not a tensor",
                              m->path, STR_ARG(key->u.str.s, key->u.str.len), kind_name(value->kind));
        char *name = arena_name(m, key->u.str.s, key->u.str.len, "");
        if (name == NULL) return -1;
        if (check_tensor(m, name, value, &recs[n_recs++]) != 0) return -1;
    }
    *out = recs;
    *n_out = n_recs;
    *states = bnb;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Entry point                                                              */
/* ------------------------------------------------------------------------ */

/* Finds the one entry named "<prefix>/data.pkl". */
static const bc__zip_entry *find_data_pkl(const bc__zip *zip, bc__err *err) {
    static const char suffix[] = "/data.pkl";
    const size_t suffix_len = sizeof suffix - 1;
    const bc__zip_entry *found = NULL;
    for (size_t i = 0; i < zip->n_entries; i++) {
        const bc__zip_entry *e = &zip->entries[i];
        if (e->name_len <= suffix_len || memcmp(e->name + e->name_len - suffix_len, suffix, suffix_len) != 0) continue;
        if (found != NULL) {
            bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                       "%s: the archive holds both '%.*s' and '%.*s'; a torch.save checkpoint has one data.pkl",
                       zip->file->path, STR_ARG(found->name, found->name_len), STR_ARG(e->name, e->name_len));
            return NULL;
        }
        found = e;
    }
    if (found == NULL)
        bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                   "%s: a zip archive without a '<name>/data.pkl' entry is not a torch.save checkpoint",
                   zip->file->path);
    return found;
}

/* torch >= 2.1 records the byte order of the storages in <prefix>/byteorder
 * ("little" or "big"); older versions wrote only little-endian files. */
static int check_byteorder(const bc__zip *zip, const char *prefix, size_t prefix_len, bc__err *err) {
    static const char suffix[] = "/byteorder";
    char name[BC__ZIP_MAX_NAME + sizeof suffix];
    if (prefix_len > BC__ZIP_MAX_NAME) return 0; /* no such entry can exist */
    memcpy(name, prefix, prefix_len);
    memcpy(name + prefix_len, suffix, sizeof suffix - 1);
    const bc__zip_entry *e = bc__zip_find(zip, name, prefix_len + sizeof suffix - 1);
    if (e == NULL) return 0;
    uint64_t offset = 0;
    if (bc__zip_entry_data(zip, e, &offset, err) != 0) return -1;
    const char *order = (const char *)zip->file->data + offset;
    if (e->size == 6 && memcmp(order, "little", 6) == 0) return 0;
    return bc__errorf(err, BC_STATUS_ERROR_FORMAT,
                      "%s: '%.*s' says the storages are '%.*s'-endian; only little-endian checkpoints can be read",
                      zip->file->path, STR_ARG(e->name, e->name_len), (int)(e->size < 16 ? e->size : 16), order);
}

/* Every check of the file itself runs before anything is added to the table.
 * Only bc__table_add can fail after that (a name another file already gave,
 * or out of memory); then the table keeps this file's mapping and the tensors
 * added before the failure, so callers free the table after any error. */
int bc__torch_read(bc__tensor_table *t, const char *path, bc__err *err) {
    bc__file *file = NULL, *owned;
    bc__zip zip;
    vm m;
    const bc__zip_entry *pkl;
    uint64_t pkl_offset = 0;
    pv *root = NULL;
    tensor_rec *recs = NULL;
    size_t n_recs = 0, n_states = 0;
    bc__bnb_state *states = NULL;
    int rc = -1;
    memset(&zip, 0, sizeof zip);
    memset(&m, 0, sizeof m);

    if (bc__file_map(path, &file, err) != 0) return -1;
    if (bc__zip_open(&zip, file, err) != 0) goto cleanup;
    if ((pkl = find_data_pkl(&zip, err)) == NULL) goto cleanup;
    if (bc__zip_entry_data(&zip, pkl, &pkl_offset, err) != 0) goto cleanup;

    m.path = file->path;
    m.zip = &zip;
    m.pkl_name = pkl->name;
    m.pkl_name_len = pkl->name_len;
    m.prefix = pkl->name;
    m.prefix_len = pkl->name_len - (sizeof "/data.pkl" - 1);
    if (check_byteorder(&zip, m.prefix, m.prefix_len, err) != 0) goto cleanup;
    m.data = file->data + pkl_offset;
    m.len = (size_t)pkl->size;
    m.none.kind = PV_NONE;
    m.yes.kind = PV_BOOL;
    m.yes.u.i = 1;
    m.no.kind = PV_BOOL;
    m.err = err;
    if (run(&m, &root) != 0) goto cleanup;
    if (collect_tensors(&m, root, &recs, &n_recs, &states, &n_states) != 0) goto cleanup;

    /* Every tensor checked: the table takes the mapping (and unmaps it if it cannot). */
    owned = file;
    file = NULL;
    if (bc__table_add_file(t, owned, err) != 0) goto cleanup;
    for (size_t i = 0; i < n_recs; i++) {
        const tensor_rec *r = &recs[i];
        if (r->foreign != NULL
                ? bc__table_add_foreign(t, r->name, r->foreign, r->n_dims, r->shape, owned, r->file_offset, r->n_bytes,
                                        err)
                : bc__table_add(t, r->name, r->dtype, r->n_dims, r->shape, owned, r->file_offset, r->n_bytes, err))
            goto cleanup;
    }
    for (size_t i = 0; i < n_states; i++) {
        states[i].file = owned;
        if (bc__table_add_bnb(t, &states[i], err) != 0) goto cleanup;
    }
    rc = 0;

cleanup:
    vm_free(&m);
    bc__zip_close(&zip);
    bc__file_unmap(file);
    return rc;
}
