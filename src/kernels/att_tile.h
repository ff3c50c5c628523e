/*
 * att_tile.h - what the attention kernels work on (header only: attend.c
 * and the x86 kernels share it): a tile of query rows of one head, the
 * head's keys and values, and the segments of keys (attend.h).
 */
#ifndef BC_ATT_TILE_H
#define BC_ATT_TILE_H

#include "kernels/kv_rows.h"

enum {
    BC__ATT_SEGMENT = 256, /* key positions per segment */
    BC__ATT_MAX_ROWS = 64, /* query rows per tile */
};

/* Query rows of one head: row r (0 <= r < n_rows <= BC__ATT_MAX_ROWS) is
 * q + r * q_stride (head_dim floats), at position pos0 + r, and attends to
 * the keys 0 .. pos0 + r. */
typedef struct bc__att_tile {
    const float *q;
    size_t q_stride;
    int n_rows, pos0;
} bc__att_tile;

/* One head's keys and values and how scores are made. */
typedef struct bc__att_head {
    bc__kv_rows k, v;
    int D;              /* head_dim */
    float scale;        /* 1 / sqrt(D) */
    const float *slope; /* the head's ALiBi slope, or NULL */
} bc__att_head;

/* Segments that hold keys of a tile (its last row's keys). */
static inline int bc__att_segments(const bc__att_tile *t) { return (t->pos0 + t->n_rows - 1) / BC__ATT_SEGMENT + 1; }

#endif /* BC_ATT_TILE_H */
