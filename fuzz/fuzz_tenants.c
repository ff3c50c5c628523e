/*
 * fuzz_tenants.c - libFuzzer target for the server's tenants file: the
 * input is the file. A file that loads is then used as the server uses it:
 * each tenant's first key is looked up, admitted and charged.
 *
 * Build with clang: cmake -B build-fuzz -DCMAKE_C_COMPILER=clang -DBC_FUZZ=ON
 * then build-fuzz/fuzz_tenants CORPUS_DIR fuzz/seeds/fuzz_tenants
 */
#include "fuzz_files.h"
#include "server.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
    char path[128];
    fuzz_path(path, sizeof path, "tenants.json");
    if (fuzz_write(path, data, size) != 0) return 0;
    srv_tenants t;
    char err[512] = "";
    if (srv_tenants_load(&t, path, err, sizeof err) == 0) {
        for (size_t i = 0; i < t.n; i++) {
            srv_tenant *tn = &t.tenants[i];
            if (tn->n_keys == 0) continue;
            if (srv_tenants_find(&t, tn->keys[0]) == NULL) abort(); /* its own key finds a tenant */
            const char *which = NULL;
            srv_tenants_admit(&t, tn, &which);
            srv_tenants_charge(&t, tn, 1000);
        }
        srv_tenants_find(&t, "");
        srv_tenants_free(&t);
    } else if (err[0] == '\0') {
        abort();
    }
    unlink(path);
    return 0;
}
