/*
 * torch_pickle.h - between the two halves of the PyTorch checkpoint reader:
 * the restricted pickle machine that runs data.pkl (torch_pickle.c), and
 * the reader that turns the state dict it leaves into checked tensors
 * (torch.c). Private to those two files.
 *
 *   values     what the machine can represent: None, bool, int, float, str,
 *              bytes, tuple, list, dict, a known global, a storage, a tensor
 *   globals    the closed list of names a pickle may refer to
 *   machine    its state; bc__pickle_init, bc__pickle_run, bc__pickle_free
 */
#ifndef BC_TORCH_PICKLE_H
#define BC_TORCH_PICKLE_H

#include "formats/torch_zip.h"

#include <stddef.h>

/* Nested MARKs the machine keeps open at once. */
#define BC__PICKLE_MAX_MARKS 256u

/* At most this many bytes of a string from the file go into a message. */
#define MSG_STR 200

/* printf arguments for a (pointer, length) string, clamped for messages. */
#define STR_ARG(s, len) (int)((len) < MSG_STR ? (len) : MSG_STR), (s)

/* ------------------------------------------------------------------------ */
/* Values and globals                                                       */
/* ------------------------------------------------------------------------ */

typedef enum bc__pv_kind {
    BC__PV_NONE,
    BC__PV_BOOL,
    BC__PV_INT,
    BC__PV_FLOAT,
    BC__PV_STR,
    BC__PV_BYTES,
    BC__PV_TUPLE,
    BC__PV_LIST,
    BC__PV_DICT,
    BC__PV_GLOBAL,
    BC__PV_STORAGE,
    BC__PV_TENSOR,
} bc__pv_kind;

/* The kind with its article, for messages: "an int", "a list". */
BC__HIDDEN const char *bc__pv_kind_name(bc__pv_kind kind);

typedef enum bc__global_kind {
    BC__GLOBAL_ORDERED_DICT,
    BC__GLOBAL_REBUILD_TENSOR_V2,
    BC__GLOBAL_REBUILD_PARAMETER,
    BC__GLOBAL_STORAGE,
    BC__GLOBAL_SIZE,  /* torch.Size: REDUCE on a tuple of ints gives the tuple */
    BC__GLOBAL_DTYPE, /* torch.float16 and kin: a value, never called */
} bc__global_kind;

/* One name a pickle may refer to with GLOBAL or STACK_GLOBAL. */
typedef struct bc__pickle_global {
    const char *module;   /* Python module, e.g. "torch._utils". */
    const char *name;     /* Attribute in it, e.g. "_rebuild_tensor_v2". */
    bc__global_kind kind; /* What the machine does with it. */
    int supported;        /* For storages: whether tensors of this type can be loaded: 1 as
                           * dtype, 2 as a foreign dtype (named by torch.c: the bitsandbytes
                           * 4-bit codes, GPTQ's packed int32). */
    bc_dtype dtype;       /* For supported storages: the element type. */
    unsigned elem_size;   /* For storages: bytes per element. */
} bc__pickle_global;

typedef struct bc__pv bc__pv;

/* A pickle value. Values live in the arena and are shared by reference, as
 * in Python: the memo and containers hold pointers, so a dict filled after
 * it was memoized is seen filled through every reference. Nothing walks
 * values recursively, so reference cycles are harmless. */
struct bc__pv {
    bc__pv_kind kind; /* Which member of u is valid. */
    union {
        int64_t i; /* BC__PV_BOOL (0 or 1) and BC__PV_INT. */
        double f;  /* BC__PV_FLOAT. */
        struct {
            const char *s; /* BC__PV_STR (UTF-8) and BC__PV_BYTES: points into data.pkl. */
            size_t len;    /* Bytes, not characters. */
        } str;
        struct {
            bc__pv **items; /* BC__PV_TUPLE and BC__PV_LIST elements, in the arena. */
            size_t n;       /* Elements in use. */
            size_t cap;     /* Elements allocated (lists grow). */
        } seq;
        struct {
            bc__pv **kv; /* 2*n pointers: key 0, value 0, key 1, value 1, ... in insertion order. */
            size_t n;    /* Pairs in use; a repeated key is caught when tensors are named. */
            size_t cap;  /* Pairs allocated. */
            int ordered; /* Made by collections.OrderedDict(), the only dict BUILD may target. */
        } dict;
        const bc__pickle_global *global; /* BC__PV_GLOBAL. */
        struct {
            const bc__pickle_global *type; /* The storage class, e.g. torch.BFloat16Storage. */
            const char *key;               /* The storage's key: its entry is <prefix>/data/<key>. */
            size_t key_len;                /* Bytes of key. */
            uint64_t numel;                /* Elements the persistent id declares. */
            uint64_t file_offset;          /* Absolute offset of the storage's first byte. */
        } storage;
        struct {
            const bc__pv *storage; /* A BC__PV_STORAGE. */
            const bc__pv *offset;  /* A BC__PV_INT: the first element, in storage elements. */
            const bc__pv *size;    /* A BC__PV_TUPLE: the shape. Checked when the tensor is named. */
            const bc__pv *stride;  /* A BC__PV_TUPLE: strides in elements. Checked when named. */
        } tensor;
    } u;
};

/* ------------------------------------------------------------------------ */
/* Machine                                                                  */
/* ------------------------------------------------------------------------ */

/* Every value and container array, freed at once with the machine. */
typedef struct bc__pickle_arena {
    struct bc__pickle_chunk *head; /* The chunk allocations come from; NULL before the first. */
    size_t total;                  /* Bytes of data in all chunks, checked against the limit. */
} bc__pickle_arena;

/* The machine: the archive it reads from, data.pkl, the stack, the marks,
 * the memo and the arena. */
typedef struct bc__pickle {
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

    bc__pv **stack;                     /* The value stack; malloc'd. */
    size_t n_stack;                     /* Values on it. */
    size_t cap_stack;                   /* Values allocated. */
    size_t marks[BC__PICKLE_MAX_MARKS]; /* Stack heights at each open MARK; nothing may pop below the last. */
    size_t n_marks;                     /* Open MARKs. */
    bc__pv **memo;                      /* memo[i] is the value stored at index i, or NULL; malloc'd. */
    size_t cap_memo;                    /* Indices allocated. */
    size_t n_memo;                      /* Indices set: MEMOIZE stores at this index, as Python's len(memo). */

    bc__pickle_arena arena; /* Every value and container array. */
    size_t n_values;        /* Values created, checked against MAX_VALUES. */
    bc__pv none;            /* The shared None. */
    bc__pv yes, no;         /* The shared True and False. */

    bc__err *err; /* Where the first error goes. */
} bc__pickle;

/* Prepares m to run the pickle entry pkl of zip, whose bytes start at data
 * (in the mapping of the file at path); the first error goes to err, naming
 * path, the entry and the offset of the opcode. Allocates nothing. */
BC__HIDDEN void bc__pickle_init(bc__pickle *m, const char *path, const bc__zip *zip, const bc__zip_entry *pkl,
                                const uint8_t *data, bc__err *err);

/* Runs data.pkl to its STOP; *result is the one value left on the stack. It
 * and every value it reaches live in m's arena until bc__pickle_free. */
BC__HIDDEN int bc__pickle_run(bc__pickle *m, bc__pv **result);

/* n bytes in m's arena, or NULL with m's error set (past the arena's limit,
 * or out of memory). */
BC__HIDDEN void *bc__pickle_alloc(bc__pickle *m, size_t n);

/* Frees m's stack, memo and arena (every value); m may be zeroed or only
 * initialized. */
BC__HIDDEN void bc__pickle_free(bc__pickle *m);

#endif /* BC_TORCH_PICKLE_H */
