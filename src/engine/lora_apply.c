/*
 * lora_apply.c - y += scale * B (A x) for the entries of a pass under LoRA
 * adapters (lora_apply.h), in two pool tasks per matrix (or pair of
 * matrices reading the same input, gate and up):
 *
 *   plan     the distinct adapters of the batch and, for each, its users:
 *            (entry, position in the entry's set) pairs sorted by position
 *   shrink   t = A x: a chunk per (matrix, adapter, rank row) computes that
 *            row of A against every user's input, the row read once
 *   expand   y += scale * B t: a chunk per (matrix, run of output rows)
 *            goes over the set positions in order, then the adapters, then
 *            their users (kernels/lora_expand.h: B held transposed, the run
 *            of outputs one vector loop per rank)
 *
 * The shrink goes through the dot kernels of the factors' dtype (f32, f16,
 * bf16 against f32 activations: kernels/dispatch.h), one activation row a
 * call; the expand kernel gives a row the same arithmetic wherever its run
 * starts; the order in which an entry's adapters add up is its set's order.
 * So an entry's bits are the same alone and in any batch.
 */
#include "engine/lora_apply.h"

#include "kernels/dispatch.h"
#include "kernels/isa.h"
#include "kernels/lora_expand.h"

#include <string.h>

/* Output rows per expand chunk: one block of B's layout (lora.h), a
 * contiguous read of r x 64 elements (with 16 adapters of a batch each read
 * by the rank rows of a transposed B, 256 strided streams defeated the
 * prefetchers: 16 streams under 16 adapters ran at 72% of the base, 1.29 B
 * Q4_0, against 71-83% with the blocks, on a shared 2-core VM). */
#define EXPAND_ROWS BC__LORA_B_BLOCK

/* A matrix's products run on the calling thread when they are few: at most
 * this many (entry, adapter) pairs and multiply-adds (a decode step of a few
 * sequences; a prompt, even of a tiny model, goes to the pool). */
#define INLINE_USERS 4
#define INLINE_WORK  (1 << 18)

static size_t max_users(int n_batch) { return (size_t)n_batch * BC_MAX_SEQ_LORAS; }

uint64_t bc__lora_plan_bytes(int n_batch, int max_rank) {
    const uint64_t u = max_users(n_batch);
    return u * sizeof(const bc_lora *) + (u + 1) * sizeof(int) + 2 * u * sizeof(int) +
           2 * u * (uint64_t)max_rank * sizeof(float) + 64;
}

void bc__lora_plan_make(bc__lora_plan *plan, void *mem, int n_batch, int max_rank, const bc__lora_set *const *sets,
                        int n) {
    const size_t u = max_users(n_batch);
    uint8_t *p = mem;
    plan->adapters = (const bc_lora **)p;
    p += u * sizeof(const bc_lora *);
    plan->t = (float *)p;
    p += 2 * u * (size_t)max_rank * sizeof(float);
    plan->t_floats = 2 * u * (size_t)max_rank;
    plan->user_start = (int *)p;
    p += (u + 1) * sizeof(int);
    plan->user_entry = (int *)p;
    p += u * sizeof(int);
    plan->user_pos = (int *)p;
    plan->n_adapters = 0;
    plan->max_set = 0;
    plan->max_rank = 0;
    if (sets == NULL) return;
    /* distinct adapters, in order of first use */
    for (int e = 0; e < n; e++) {
        const bc__lora_set *s = sets[e];
        if (s == NULL) continue;
        if (s->n > plan->max_set) plan->max_set = s->n;
        for (int j = 0; j < s->n; j++) {
            int a = 0;
            while (a < plan->n_adapters && plan->adapters[a] != s->loras[j]) a++;
            if (a == plan->n_adapters) {
                plan->adapters[plan->n_adapters++] = s->loras[j];
                if (s->loras[j]->rank > plan->max_rank) plan->max_rank = s->loras[j]->rank;
            }
        }
    }
    /* each adapter's users, by position in the set, then entry */
    int k = 0;
    for (int a = 0; a < plan->n_adapters; a++) {
        plan->user_start[a] = k;
        for (int j = 0; j < plan->max_set; j++)
            for (int e = 0; e < n; e++)
                if (sets[e] != NULL && j < sets[e]->n && sets[e]->loras[j] == plan->adapters[a]) {
                    plan->user_entry[k] = e;
                    plan->user_pos[k] = j;
                    k++;
                }
    }
    plan->user_start[plan->n_adapters] = k;
}

bool bc__lora_plan_touches(const bc__lora_plan *plan, int il, bc__lora_slot slot) {
    for (int a = 0; a < plan->n_adapters; a++)
        if (bc__lora_mat_of(plan->adapters[a], il, slot) != NULL) return true;
    return false;
}

/* ------------------------------------------------------------------------ */
/* The two products                                                         */
/* ------------------------------------------------------------------------ */

typedef struct lora_task {
    const bc__lora_plan *plan;
    int il;
    const bc__lora_slot *slots;
    int n_slots;
    const float *x; /* (n, in) */
    float *const *ys;
    int64_t in;
    int64_t rank_rows;   /* sum of the ranks of the adapters of the plan: shrink chunks per slot */
    int64_t out_chunks;  /* expand chunks of the first slot */
    int64_t out_chunks2; /* of the second */
    bc__dot_fn dot[BC_DTYPE_COUNT];
} lora_task;

static float *t_of(const lora_task *t, int slot_i, int user) {
    const bc__lora_plan *p = t->plan;
    const size_t n_users = (size_t)p->user_start[p->n_adapters];
    return p->t + ((size_t)slot_i * n_users + (size_t)user) * (size_t)p->max_rank;
}

/* Chunk c: slot c / rank_rows, then the adapter and the row of its A. */
static void shrink_worker(void *arg, int64_t c, int ith) {
    (void)ith;
    const lora_task *t = arg;
    const bc__lora_plan *p = t->plan;
    const int si = (int)(c / t->rank_rows);
    int64_t k = c % t->rank_rows;
    int a = 0;
    while (k >= p->adapters[a]->rank) k -= p->adapters[a++]->rank;
    const bc_lora *l = p->adapters[a];
    const bc__lora_mat *m = bc__lora_mat_of(l, t->il, t->slots[si]);
    if (m == NULL) return;
    const size_t esize = bc__dtype_traits_of(l->dtype)->block_bytes;
    const void *row = (const char *)m->a + (size_t)k * (size_t)m->in * esize;
    for (int u = p->user_start[a]; u < p->user_start[a + 1]; u++) {
        float v;
        t->dot[l->dtype](m->in, row, t->x + (size_t)p->user_entry[u] * (size_t)m->in, 0, 1, &v);
        t_of(t, si, u)[k] = v;
    }
}

/* Chunk c: a run of EXPAND_ROWS output rows of one slot: for each set
 * position, adapter and user, acc = B t over the run (B's run of r rows held
 * in one block, in L1 for all the users), then y += scale * acc. */
static void expand_worker(void *arg, int64_t c, int ith) {
    (void)ith;
    const lora_task *t = arg;
    const bc__lora_plan *p = t->plan;
    const int si = c < t->out_chunks ? 0 : 1;
    if (si == 1) c -= t->out_chunks;
    float *y = t->ys[si];
    int64_t in, out;
    bc__lora_slot_dims(&p->adapters[0]->model->hp, t->slots[si], &in, &out);
    const int64_t rb = c * EXPAND_ROWS;
    const int n = (int)(rb + EXPAND_ROWS < out ? EXPAND_ROWS : out - rb);
    float acc[EXPAND_ROWS];
    for (int j = 0; j < p->max_set; j++)
        for (int a = 0; a < p->n_adapters; a++) {
            const bc_lora *l = p->adapters[a];
            const bc__lora_mat *m = bc__lora_mat_of(l, t->il, t->slots[si]);
            if (m == NULL) continue;
            for (int u = p->user_start[a]; u < p->user_start[a + 1]; u++) {
                if (p->user_pos[u] != j) continue;
                const size_t esize = bc__dtype_traits_of(l->dtype)->block_bytes;
                const char *block = (const char *)m->b + (size_t)c * (size_t)l->rank * EXPAND_ROWS * esize;
                bc__lora_expand(l->dtype, l->rank, block, EXPAND_ROWS, 0, n, t_of(t, si, u), acc);
                float *yu = y + (size_t)p->user_entry[u] * (size_t)out + (size_t)rb;
                for (int i = 0; i < n; i++) yu[i] += l->scale * acc[i];
            }
        }
}

void bc__lora_apply(const bc__lora_plan *plan, bc__pool *pool, int il, const bc__lora_slot *slots, int n_slots,
                    const float *x, float *const *ys) {
    if (plan->n_adapters == 0) return;
    lora_task t;
    memset(&t, 0, sizeof t);
    t.plan = plan;
    t.il = il;
    t.slots = slots;
    t.n_slots = n_slots;
    t.x = x;
    t.ys = ys;
    const bc__isa isa = bc__kernels_isa();
    t.dot[BC_DTYPE_F32] = bc__dot_kernel(BC_DTYPE_F32, isa);
    t.dot[BC_DTYPE_F16] = bc__dot_kernel(BC_DTYPE_F16, isa);
    t.dot[BC_DTYPE_BF16] = bc__dot_kernel(BC_DTYPE_BF16, isa);
    for (int a = 0; a < plan->n_adapters; a++) t.rank_rows += plan->adapters[a]->rank;
    const bc__hparams *hp = &plan->adapters[0]->model->hp;
    int64_t in, out;
    bc__lora_slot_dims(hp, slots[0], &in, &out);
    t.in = in;
    t.out_chunks = (out + EXPAND_ROWS - 1) / EXPAND_ROWS;
    if (n_slots > 1) {
        bc__lora_slot_dims(hp, slots[1], &in, &out);
        t.out_chunks2 = (out + EXPAND_ROWS - 1) / EXPAND_ROWS;
    }
    /* Few products (a decode step of a few sequences: r x (in + out) each)
     * run on this thread: two pool tasks per matrix, eight a layer, cost
     * more in wake-ups than they spread (1.29 B Q4_0, one stream, r = 16
     * on all modules, two threads on a busy 2-core VM: 84% of the base's
     * speed through the pool, 94-95% this way). */
    int64_t work = 0;
    for (int i = 0; i < n_slots; i++) {
        bc__lora_slot_dims(hp, slots[i], &in, &out);
        for (int a = 0; a < plan->n_adapters; a++)
            work += (int64_t)plan->adapters[a]->rank * (in + out) * (plan->user_start[a + 1] - plan->user_start[a]);
    }
    if (plan->user_start[plan->n_adapters] <= INLINE_USERS && work < INLINE_WORK) {
        for (int64_t c = 0; c < t.rank_rows * n_slots; c++) shrink_worker(&t, c, 0);
        for (int64_t c = 0; c < t.out_chunks + t.out_chunks2; c++) expand_worker(&t, c, 0);
        return;
    }
    bc__pool_run(pool, shrink_worker, &t, t.rank_rows * n_slots);
    bc__pool_run(pool, expand_worker, &t, t.out_chunks + t.out_chunks2);
}
