/*
 * adapters.c - the server's LoRA adapters by name (adapters.h): a list in
 * load order under one lock, each entry reference counted.
 *
 * The list is short (an operator's adapters, hundreds at most), so lookups
 * walk it. A load reserves its name with an entry that has no adapter yet:
 * lookups skip it, a second load of the name sees it taken, and the file is
 * read outside the lock.
 */
#include "adapters.h"

#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

struct srv_adapter {
    srv_adapter *next; /* the list, while listed */
    char *name;
    bc_lora *lora; /* NULL while it loads */
    bc_lora_info info;
    atomic_int refs; /* the registry's while listed, and one per request */
};

struct srv_adapters {
    const bc_model *model;
    pthread_mutex_t mu; /* the list */
    srv_adapter *head, *tail;
};

srv_adapters *srv_adapters_new(const bc_model *model) {
    srv_adapters *reg = calloc(1, sizeof *reg);
    if (reg == NULL) return NULL;
    reg->model = model;
    pthread_mutex_init(&reg->mu, NULL);
    return reg;
}

void srv_adapters_free(srv_adapters *reg) {
    if (reg == NULL) return;
    srv_adapter *a = reg->head;
    while (a != NULL) {
        srv_adapter *next = a->next;
        srv_adapter_release(a);
        a = next;
    }
    pthread_mutex_destroy(&reg->mu);
    free(reg);
}

bool srv_adapter_name_valid(const char *name) {
    size_t n = strlen(name);
    if (n == 0 || n > 64) return false;
    for (size_t i = 0; i < n; i++) {
        char c = name[i];
        if (!((c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '.' || c == '_' ||
              c == '-'))
            return false;
    }
    return true;
}

/* Under reg->mu: the entry named name (loading or not), and the one before
 * it in *prev. */
static srv_adapter *find(srv_adapters *reg, const char *name, srv_adapter **prev) {
    srv_adapter *p = NULL;
    for (srv_adapter *a = reg->head; a != NULL; p = a, a = a->next)
        if (strcmp(a->name, name) == 0) {
            if (prev) *prev = p;
            return a;
        }
    return NULL;
}

/* Under reg->mu: takes a off the list. */
static void unlink_entry(srv_adapters *reg, srv_adapter *a, srv_adapter *prev) {
    if (prev)
        prev->next = a->next;
    else
        reg->head = a->next;
    if (reg->tail == a) reg->tail = prev;
    a->next = NULL;
}

srv_adapter_status srv_adapters_load(srv_adapters *reg, const char *name, const char *path, const char *base_name,
                                     char *err, size_t err_size) {
    if (!srv_adapter_name_valid(name) || (base_name != NULL && strcmp(name, base_name) == 0)) {
        snprintf(err, err_size, "'%.100s' is not an adapter name: 1 to 64 of A-Z a-z 0-9 . _ -, not the base model's",
                 name);
        return SRV_ADAPTER_BAD_NAME;
    }
    srv_adapter *a = calloc(1, sizeof *a);
    if (a == NULL || (a->name = strdup(name)) == NULL) {
        free(a);
        snprintf(err, err_size, "out of memory");
        return SRV_ADAPTER_FAILED;
    }
    atomic_init(&a->refs, 1);
    pthread_mutex_lock(&reg->mu);
    bool taken = find(reg, name, NULL) != NULL;
    if (!taken) { /* reserved: listed without an adapter until it loads */
        if (reg->tail)
            reg->tail->next = a;
        else
            reg->head = a;
        reg->tail = a;
    }
    pthread_mutex_unlock(&reg->mu);
    if (taken) {
        snprintf(err, err_size, "an adapter named '%s' is already loaded (unload it first)", name);
        free(a->name);
        free(a);
        return SRV_ADAPTER_TAKEN;
    }
    bc_lora *lora = NULL;
    bc_status st = bc_lora_load(reg->model, path, 1.0f, &lora, err, err_size);
    pthread_mutex_lock(&reg->mu);
    srv_adapter *prev = NULL;
    find(reg, name, &prev); /* still listed: only a load's own failure removes a reserved entry */
    if (st == BC_STATUS_OK) {
        a->lora = lora;
        bc_lora_get_info(lora, &a->info);
    } else {
        unlink_entry(reg, a, prev);
    }
    pthread_mutex_unlock(&reg->mu);
    if (st != BC_STATUS_OK) {
        free(a->name);
        free(a);
        return SRV_ADAPTER_FAILED;
    }
    return SRV_ADAPTER_OK;
}

bool srv_adapters_unload(srv_adapters *reg, const char *name, int *n_running) {
    pthread_mutex_lock(&reg->mu);
    srv_adapter *prev = NULL, *a = find(reg, name, &prev);
    if (a != NULL && a->lora == NULL) a = NULL; /* still loading: not there yet */
    if (a != NULL) unlink_entry(reg, a, prev);
    pthread_mutex_unlock(&reg->mu);
    if (a == NULL) return false;
    *n_running = atomic_load(&a->refs) - 1;
    srv_adapter_release(a);
    return true;
}

bool srv_tenant_may_use(const srv_tenant *tenant, const char *name) {
    if (tenant == NULL) return true;
    const char *list = tenant->adapters;
    if (list == NULL) return false;
    size_t n = strlen(name);
    for (const char *p = list; *p != '\0';) {
        const char *end = strchr(p, ',');
        size_t len = end ? (size_t)(end - p) : strlen(p);
        if ((len == 1 && p[0] == '*') || (len == n && memcmp(p, name, n) == 0)) return true;
        if (end == NULL) break;
        p = end + 1;
    }
    return false;
}

srv_adapter *srv_adapters_acquire(srv_adapters *reg, const char *name, const srv_tenant *tenant) {
    if (reg == NULL || !srv_tenant_may_use(tenant, name)) return NULL;
    pthread_mutex_lock(&reg->mu);
    srv_adapter *a = find(reg, name, NULL);
    if (a != NULL && a->lora == NULL) a = NULL;
    if (a != NULL) atomic_fetch_add(&a->refs, 1);
    pthread_mutex_unlock(&reg->mu);
    return a;
}

void srv_adapter_release(srv_adapter *a) {
    if (a == NULL || atomic_fetch_sub(&a->refs, 1) != 1) return;
    bc_lora_free(a->lora);
    free(a->name);
    free(a);
}

const char *srv_adapter_name(const srv_adapter *a) { return a->name; }

const bc_lora *srv_adapter_lora(const srv_adapter *a) { return a->lora; }

void srv_adapters_models(srv_adapters *reg, const srv_tenant *tenant, const char *base_name, json_t *data) {
    if (reg == NULL) return;
    pthread_mutex_lock(&reg->mu);
    for (srv_adapter *a = reg->head; a != NULL; a = a->next) {
        if (a->lora == NULL || !srv_tenant_may_use(tenant, a->name)) continue;
        json_array_append_new(data, json_pack("{s:s, s:s, s:I, s:s, s:s, s:s, s:i}", "id", a->name, "object", "model",
                                              "created", (json_int_t)0, "owned_by", "baichuan.c", "root", a->info.path,
                                              "parent", base_name, "lora_rank", a->info.rank));
    }
    pthread_mutex_unlock(&reg->mu);
}

unsigned long long srv_adapters_bytes(srv_adapters *reg, int *n) {
    unsigned long long total = 0;
    *n = 0;
    if (reg == NULL) return 0;
    pthread_mutex_lock(&reg->mu);
    for (srv_adapter *a = reg->head; a != NULL; a = a->next)
        if (a->lora != NULL) {
            total += a->info.bytes;
            (*n)++;
        }
    pthread_mutex_unlock(&reg->mu);
    return total;
}

void srv_adapters_metrics(srv_adapters *reg, srv_buf *out) {
    int n = 0;
    unsigned long long total = 0;
    srv_buf_puts(out, "# HELP baichuan_lora_adapter_bytes Memory each loaded LoRA adapter holds.\n"
                      "# TYPE baichuan_lora_adapter_bytes gauge\n");
    if (reg != NULL) pthread_mutex_lock(&reg->mu);
    for (srv_adapter *a = reg ? reg->head : NULL; a != NULL; a = a->next) {
        if (a->lora == NULL) continue;
        srv_buf_printf(out, "baichuan_lora_adapter_bytes{adapter=\"%s\",rank=\"%d\"} %llu\n", a->name, a->info.rank,
                       (unsigned long long)a->info.bytes);
        n++;
        total += a->info.bytes;
    }
    srv_buf_puts(out, "# HELP baichuan_lora_adapter_requests Requests queued or running under each adapter.\n"
                      "# TYPE baichuan_lora_adapter_requests gauge\n");
    for (srv_adapter *a = reg ? reg->head : NULL; a != NULL; a = a->next)
        if (a->lora != NULL)
            srv_buf_printf(out, "baichuan_lora_adapter_requests{adapter=\"%s\"} %d\n", a->name,
                           atomic_load(&a->refs) - 1);
    if (reg != NULL) pthread_mutex_unlock(&reg->mu);
    srv_buf_printf(out,
                   "# HELP baichuan_lora_adapters Loaded LoRA adapters.\n"
                   "# TYPE baichuan_lora_adapters gauge\nbaichuan_lora_adapters %d\n"
                   "# HELP baichuan_lora_adapters_bytes Memory all loaded LoRA adapters hold.\n"
                   "# TYPE baichuan_lora_adapters_bytes gauge\nbaichuan_lora_adapters_bytes %llu\n",
                   n, total);
}

/* "W_pack,o_proj" for bc_lora_module bits. */
static void module_names(uint32_t bits, char *out, size_t cap) {
    static const char *const names[] = {"W_pack", "o_proj", "gate_proj", "up_proj", "down_proj"};
    size_t len = 0;
    out[0] = '\0';
    for (int i = 0; i < 5; i++)
        if (bits & (1u << i))
            len += (size_t)snprintf(out + len, len < cap ? cap - len : 0, "%s%s", len ? "," : "", names[i]);
}

void srv_adapters_describe(srv_adapters *reg, srv_buf *out) {
    if (reg == NULL) return;
    pthread_mutex_lock(&reg->mu);
    for (srv_adapter *a = reg->head; a != NULL; a = a->next) {
        if (a->lora == NULL) continue;
        char modules[64];
        module_names(a->info.modules, modules, sizeof modules);
        srv_buf_printf(out, "adapter %s: %s, r %d on %s (%d matrices), scale %g, %s, %.2f MiB\n", a->name, a->info.path,
                       a->info.rank, modules, a->info.n_matrices, (double)a->info.scale, bc_dtype_name(a->info.dtype),
                       (double)a->info.bytes / (1024.0 * 1024.0));
    }
    pthread_mutex_unlock(&reg->mu);
}
