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

#include "formats/safetensors.h"

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
    expect_error("{\"a\":{\"dtype\":\"F65\",\"shape\":[1],\"data_offsets\":[0,8]}}", 8, "unknown dtype \"F65\"");
    expect_error("{\"a\":{\"dtype\":\"I64\",\"shape\":[2],\"data_offsets\":[0,8]}}", 8, "need 16 bytes");
    expect_error("{\"a\":{\"dtype\":\"F4\",\"shape\":[3],\"data_offsets\":[0,2]}}", 2, "whole number of bytes");
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

/* Byte ranges must tile the data section, as the reference implementation requires. */
static void test_ranges_tile_the_data(void **state) {
    (void)state;
    /* Overlap by one byte: both tensors and both ranges are named. */
    const char *overlap = "{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                          "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[7,15]}}";
    expect_error(overlap, 15, "overlap");
    expect_error(overlap, 15, "'a' (data_offsets [0, 8]) and 'b' (data_offsets [7, 15])");
    /* A hole between two tensors, and before the first. */
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[12,20]}}",
                 20, "data bytes [8, 12) belong to no tensor: a hole between 'a' (data_offsets [0, 8]) and 'b'");
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[4,12]}}", 12,
                 "data bytes [0, 4) belong to no tensor: the first, 'a'");
    /* Bytes after the last tensor, or data with no tensors at all. */
    expect_error(valid_header, 33, "data bytes [32, 33) after the last tensor, 'b'");
    expect_error("{}", 4, "no tensors but 4 bytes");
    expect_error("{\"__metadata__\":{}}", 1, "no tensors but 1 bytes");
    /* An empty tensor inside another's range. */
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"z\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[4,4]}}",
                 8, "'a' (data_offsets [0, 8]) and 'z' (data_offsets [4, 4]) overlap");
    /* Two tensors at the same place. */
    expect_error("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
                 "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
                 8, "overlap");
}

static void expect_ok(const char *header, size_t n_data, bc__tensor_table *t) {
    write_file(header, n_data, SIZE_MAX);
    char msg[1024];
    if (read_file(t, msg, sizeof msg) != 0) fail_msg("refused a good file (%s): %s", header, msg);
}

static void test_unsorted_ranges_accepted(void **state) {
    (void)state;
    /* Listed out of data order; the ranges still tile. */
    bc__tensor_table t;
    expect_ok("{\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
              "\"__metadata__\":{\"format\":\"pt\"},"
              "\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]}}",
              16, &t);
    assert_int_equal(t.n_tensors, 2);
    const uint8_t expect[16] = {0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15};
    assert_memory_equal(bc__table_find(&t, "a")->data, expect, 8);
    assert_memory_equal(bc__table_find(&t, "b")->data, expect + 8, 8);
    bc__table_free(&t);
}

static void test_empty_tensors(void **state) {
    (void)state;
    /* Empty tensors take no bytes: at the start, between two tensors, at the end. */
    bc__tensor_table t;
    expect_ok("{\"a\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"z0\":{\"dtype\":\"F32\",\"shape\":[0],\"data_offsets\":[0,0]},"
              "\"z1\":{\"dtype\":\"BF16\",\"shape\":[3,0],\"data_offsets\":[8,8]},"
              "\"b\":{\"dtype\":\"F32\",\"shape\":[2],\"data_offsets\":[8,16]},"
              "\"z2\":{\"dtype\":\"I32\",\"shape\":[0],\"data_offsets\":[16,16]}}",
              16, &t);
    assert_int_equal(t.n_tensors, 5);
    assert_int_equal(bc__table_find(&t, "z1")->n_bytes, 0);
    assert_int_equal(bc__table_find(&t, "z1")->shape[0], 3);
    bc__table_free(&t);
    /* A file of empty tensors only has no data at all. */
    expect_ok("{\"z\":{\"dtype\":\"F16\",\"shape\":[0],\"data_offsets\":[0,0]}}", 0, &t);
    assert_int_equal(t.n_tensors, 1);
    bc__table_free(&t);
}

static void test_foreign_dtypes_kept(void **state) {
    (void)state;
    /* Known dtypes the model cannot use are read, size-checked, and marked. */
    bc__tensor_table t;
    expect_ok("{\"i\":{\"dtype\":\"I32\",\"shape\":[2],\"data_offsets\":[0,8]},"
              "\"u\":{\"dtype\":\"U8\",\"shape\":[3],\"data_offsets\":[8,11]},"
              "\"e\":{\"dtype\":\"F8_E4M3\",\"shape\":[1],\"data_offsets\":[11,12]},"
              "\"f\":{\"dtype\":\"F4\",\"shape\":[2,2],\"data_offsets\":[12,14]},"
              "\"w\":{\"dtype\":\"F32\",\"shape\":[1],\"data_offsets\":[14,18]}}",
              18, &t);
    const bc__tensor *i = bc__table_find(&t, "i"), *w = bc__table_find(&t, "w");
    assert_string_equal(i->foreign_dtype, "I32");
    assert_int_equal(i->n_bytes, 8);
    assert_string_equal(bc__table_find(&t, "f")->foreign_dtype, "F4");
    assert_null(w->foreign_dtype);
    assert_int_equal(w->dtype, BC_DTYPE_F32);
    assert_int_equal((uintptr_t)w->data % 4, 0); /* at offset 14 of the data: copied */
    bc__table_free(&t);
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
        cmocka_unit_test(test_ranges_tile_the_data),
        cmocka_unit_test(test_unsorted_ranges_accepted),
        cmocka_unit_test(test_empty_tensors),
        cmocka_unit_test(test_foreign_dtypes_kept),
    };
    return cmocka_run_group_tests(tests, setup, teardown);
}
