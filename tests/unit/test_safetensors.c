/*
 * test_safetensors.c - the safetensors reader on hand-made files: a valid
 * file read back exactly, and each kind of damage refused with a message
 * that names the file and the tensor.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "internal.h"

static char tmp_path[64];

/* Writes u64 header length, the header, then n_data bytes 0, 1, 2, ... */
static void write_file(const char *header, size_t n_data, size_t truncate_to) {
    size_t hl = strlen(header), total = 8 + hl + n_data;
    uint8_t *buf = malloc(total);
    uint64_t h = hl;
    memcpy(buf, &h, 8);
    memcpy(buf + 8, header, hl);
    for (size_t i = 0; i < n_data; i++) buf[8 + hl + i] = (uint8_t)i;
    FILE *f = fopen(tmp_path, "wb");
    assert_non_null(f);
    fwrite(buf, 1, truncate_to < total ? truncate_to : total, f);
    fclose(f);
    free(buf);
}

/* Reads tmp_path; returns the error message (or "" on success) in msg. */
static int read_file(bc__tensor_table *t, char *msg, size_t n) {
    bc__err err = {BC_STATUS_OK, ""};
    memset(t, 0, sizeof *t);
    int rc = bc__safetensors_read(t, tmp_path, &err);
    snprintf(msg, n, "%s", err.msg);
    return rc;
}

static void expect_error(const char *header, size_t n_data, const char *needle) {
    write_file(header, n_data, SIZE_MAX);
    bc__tensor_table t;
    char msg[1024];
    int rc = read_file(&t, msg, sizeof msg);
    bc__table_free(&t);
    if (rc == 0) fail_msg("accepted a bad file: %s", header);
    if (strstr(msg, tmp_path) == NULL) fail_msg("message does not name the file: %s", msg);
    if (strstr(msg, needle) == NULL) fail_msg("message '%s' lacks '%s'", msg, needle);
}

static const char valid_header[] = "{\"__metadata__\":{\"format\":\"pt\"},"
                                   "\"a\":{\"dtype\":\"F32\",\"shape\":[2,3],\"data_offsets\":[0,24]},"
                                   "\"b\":{\"dtype\":\"BF16\",\"shape\":[4],\"data_offsets\":[24,32]}}";

static void test_valid(void **state) {
    (void)state;
    write_file(valid_header, 32, SIZE_MAX);
    bc__tensor_table t;
    char msg[1024];
    assert_int_equal(read_file(&t, msg, sizeof msg), 0);
    assert_int_equal(t.n_tensors, 2);
    const bc__tensor *a = bc__table_find(&t, "a"), *b = bc__table_find(&t, "b");
    assert_non_null(a);
    assert_non_null(b);
    assert_int_equal(a->dtype, BC_DTYPE_F32);
    assert_int_equal(a->n_dims, 2);
    assert_int_equal(a->shape[0], 2);
    assert_int_equal(a->shape[1], 3);
    assert_int_equal(b->dtype, BC_DTYPE_BF16);
    uint8_t expect[32];
    for (int i = 0; i < 32; i++) expect[i] = (uint8_t)i;
    assert_memory_equal(a->data, expect, 24);
    assert_memory_equal(b->data, expect + 24, 8);
    assert_int_equal((uintptr_t)a->data % 4, 0);
    bc__table_free(&t);
}

static void test_unaligned_data_is_copied(void **state) {
    (void)state;
    /* A header of odd length puts the data at an odd offset. */
    write_file("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}} ", 8, SIZE_MAX);
    bc__tensor_table t;
    char msg[1024];
    assert_int_equal(read_file(&t, msg, sizeof msg), 0);
    const bc__tensor *a = bc__table_find(&t, "a");
    assert_int_equal((uintptr_t)a->data % 4, 0);
    const uint8_t expect[8] = {0, 1, 2, 3, 4, 5, 6, 7};
    assert_memory_equal(a->data, expect, 8);
    bc__table_free(&t);
}

static void test_every_truncation_fails(void **state) {
    (void)state;
    size_t total = 8 + strlen(valid_header) + 32;
    for (size_t cut = 0; cut < total; cut++) {
        write_file(valid_header, 32, cut);
        bc__tensor_table t;
        char msg[1024];
        int rc = read_file(&t, msg, sizeof msg);
        bc__table_free(&t);
        if (rc == 0) fail_msg("accepted a file truncated to %zu of %zu bytes", cut, total);
        assert_non_null(strstr(msg, tmp_path));
    }
}

static void test_bad_headers(void **state) {
    (void)state;
    expect_error("{\"a\":", 0, "not valid JSON");
    expect_error("[1,2]", 0, "not a JSON object");
    expect_error("{\"a\":{\"dtype\":\"F64\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "unsupported dtype \"F64\"");
    expect_error("{\"a\":{\"dtype\":\"I8\",\"shape\":[1],\"data_offsets\":[0,1]}}", 1, "'a'");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[-1],\"data_offsets\":[0,4]}}", 4, "shape entry 0");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[\"x\"],\"data_offsets\":[0,4]}}", 4, "shape entry 0");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[3],\"data_offsets\":[0,8]}}", 8, "need 12 bytes");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,0]}}", 8, "end before they begin");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4],\"data_offsets\":[0,16]}}", 8, "past the end");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0]}}", 8, "data_offsets");
    expect_error("{\"a\":{\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "dtype");
    expect_error("{\"a\":7}", 0, "not an object");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1,1,1,1,1],\"data_offsets\":[0,4]}}", 4, "dimensions");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[4611686018427387904,8],\"data_offsets\":[0,4]}}", 4,
                 "overflows");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]},"
                 "\"a\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[0,4]}}",
                 4, "JSON");
}

static void test_header_size_checks(void **state) {
    (void)state;
    FILE *f = fopen(tmp_path, "wb");
    uint64_t huge = UINT64_MAX - 3;
    fwrite(&huge, 8, 1, f);
    fwrite("{}", 1, 2, f);
    fclose(f);
    bc__tensor_table t;
    char msg[1024];
    assert_int_not_equal(read_file(&t, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "implausible"));
    bc__table_free(&t);

    f = fopen(tmp_path, "wb");
    uint64_t past = 1000;
    fwrite(&past, 8, 1, f);
    fwrite("{}", 1, 2, f);
    fclose(f);
    assert_int_not_equal(read_file(&t, msg, sizeof msg), 0);
    assert_non_null(strstr(msg, "past the end"));
    bc__table_free(&t);
}

static int setup(void **state) {
    (void)state;
    snprintf(tmp_path, sizeof tmp_path, "/tmp/bc_test_st_%d.safetensors", (int)getpid());
    return 0;
}

static int teardown(void **state) {
    (void)state;
    unlink(tmp_path);
    return 0;
}

int main(void) {
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_valid),
        cmocka_unit_test(test_unaligned_data_is_copied),
        cmocka_unit_test(test_every_truncation_fails),
        cmocka_unit_test(test_bad_headers),
        cmocka_unit_test(test_header_size_checks),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
