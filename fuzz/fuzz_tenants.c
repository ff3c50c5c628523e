/*
 * fuzz_tenants.c - libFuzzer target for the server's tenants file: the
 * input is the file. A file that loads is then used as the server uses it:
 * each tenant's first key is looked up, admitted and charged.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_tenants CORPUS_DIR fuzz/seeds/fuzz_tenants
 */
#include "fuzz_files.h"
#include "tenants.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[128];
    fuzz_path(path, sizeof path, "tenants.json");
    if (fuzz_write(path, data, size) != 0) return 0;
    srv_tenants t;
    char err[512] = "";
    if (srv_tenants_load(&t, path, err, sizeof err) == 0) {
        json_t *doc = json_loadb((const char *)data, size, 0, NULL);
        for (size_t i = 0; i < t.n; i++) {
            srv_tenant *tn = &t.tenants[i];
            /* Its own first key, unless given as a digest, finds a tenant. */
            json_t *key =
                json_array_get(json_object_get(json_array_get(json_object_get(doc, "tenants"), i), "keys"), 0);
            if (json_is_string(key) && strncmp(json_string_value(key), "sha256:", 7) != 0 &&
                srv_tenants_find(&t, json_string_value(key)) == NULL)
                abort();
            const char *which = NULL;
            srv_tenants_admit(&t, tn, &which);
            srv_tenants_charge(&t, tn, 1000);
        }
        json_decref(doc);
        srv_tenants_find(&t, "");
        srv_tenants_free(&t);
    } else if (err[0] == '\0') {
        abort();
    }
    unlink(path);
    return 0;
}
