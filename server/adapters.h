/*
 * adapters.h - the LoRA adapters a server serves by name (adapters.c): the
 * ones of `serve --lora NAME=PATH` and the ones loaded and unloaded while it
 * runs (POST /v1/load_lora_adapter, /v1/unload_lora_adapter), and which of
 * them a tenant may use.
 *
 * An adapter is reference counted: the registry holds one reference while
 * the adapter is listed, and each request that runs under it holds one.
 * Unloading takes it off the list at once (a new request for its name finds
 * nothing) and drops the registry's reference; the requests still running
 * under it finish, and the last one to end frees it. Every call is
 * thread-safe (one lock, a leaf).
 */
#ifndef BC_ADAPTERS_H
#define BC_ADAPTERS_H

#include "baichuan.h"
#include "store.h"
#include "util.h"

#include <jansson.h>
#include <stdbool.h>
#include <stddef.h>

typedef struct srv_adapter srv_adapter;
typedef struct srv_adapters srv_adapters;

/* An empty registry for adapters of model (borrowed; outlives it). NULL
 * out of memory. */
srv_adapters *srv_adapters_new(const bc_model *model);
/* Drops the registry's reference on every adapter still listed, and frees
 * the registry. The adapters that requests still hold are freed when those
 * end. NULL is ignored. */
void srv_adapters_free(srv_adapters *reg);

/* An adapter's name: 1 to 64 of [A-Za-z0-9._-] (it goes into JSON, the
 * ledger, Prometheus labels and the tenants' comma-separated lists). */
bool srv_adapter_name_valid(const char *name);

typedef enum srv_adapter_status {
    SRV_ADAPTER_OK = 0,
    SRV_ADAPTER_BAD_NAME = 1, /* not a valid name, or the base model's */
    SRV_ADAPTER_TAKEN = 2,    /* an adapter of this name is listed (or being loaded) */
    SRV_ADAPTER_FAILED = 3,   /* bc_lora_load refused the file: err has its message */
} srv_adapter_status;

/* Loads the adapter at path (bc_lora_load, user scale 1) and lists it as
 * name. base_name (the served model's name) may not be taken. The name is
 * reserved while the file loads, so of two loads of one name one gets
 * SRV_ADAPTER_TAKEN. err gets the reason of anything but SRV_ADAPTER_OK. */
srv_adapter_status srv_adapters_load(srv_adapters *reg, const char *name, const char *path, const char *base_name,
                                     char *err, size_t err_size);
/* Takes the adapter name off the list and drops the registry's reference:
 * true, with the requests still running under it in *n_running; false
 * when no adapter of that name is listed. */
bool srv_adapters_unload(srv_adapters *reg, const char *name, int *n_running);

/* True when tenant may use adapter name: NULL (no tenant store) may use
 * every adapter; a tenant those of its list ("*" = all). */
bool srv_tenant_may_use(const srv_tenant *tenant, const char *name);

/* The listed adapter name with one more reference, or NULL when none is
 * listed or tenant may not use it (the two are not told apart). */
srv_adapter *srv_adapters_acquire(srv_adapters *reg, const char *name, const srv_tenant *tenant);
/* Drops a reference; the last one frees the adapter. NULL is ignored. */
void srv_adapter_release(srv_adapter *a);
const char *srv_adapter_name(const srv_adapter *a);
const bc_lora *srv_adapter_lora(const srv_adapter *a);

/* The adapters tenant may use, as /v1/models entries {id, object, created,
 * owned_by, root (the adapter's path), parent (base_name)}, appended to
 * data in load order. */
void srv_adapters_models(srv_adapters *reg, const srv_tenant *tenant, const char *base_name, json_t *data);
/* Bytes the listed adapters hold, and their count in *n. */
unsigned long long srv_adapters_bytes(srv_adapters *reg, int *n);
/* /metrics lines: each listed adapter's bytes, rank and running requests,
 * and the count and bytes of all. */
void srv_adapters_metrics(srv_adapters *reg, srv_buf *out);
/* One line per listed adapter for the server's log (name, path, rank,
 * modules, scale, bytes). */
void srv_adapters_describe(srv_adapters *reg, srv_buf *out);

#endif /* BC_ADAPTERS_H */
