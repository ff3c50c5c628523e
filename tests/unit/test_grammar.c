/*
 * test_grammar.c - the grammar engine through the public API.
 *
 *   - compile errors name the place (syntax, undefined rules, left
 *     recursion, no root, empty classes, limits);
 *   - whole matches equal an independent matcher: POSIX extended regular
 *     expressions (regcomp) for regular grammars over random strings, a
 *     depth counter for balanced brackets, hand-picked UTF-8 cases;
 *   - prefix answers are consistent: every prefix of a match is a prefix;
 *   - token masks equal a brute-force check of every piece (its bytes
 *     appended to the text so far, matched from the start) along random
 *     generations with the default model's tokenizer;
 *   - the sampler draws only allowed ids and ends only where the grammar may.
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <malloc.h>
#include <math.h>
#include <regex.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "baichuan.h"

static const char *g_model_dir = "models/default";

static bc_grammar *compile(const char *gbnf, const bc_tokenizer *tok) {
    bc_grammar *g = NULL;
    char err[512] = "";
    bc_status st = bc_grammar_init_gbnf(tok, gbnf, strlen(gbnf), &g, err, sizeof err);
    if (st != BC_STATUS_OK) fail_msg("grammar did not compile: %s\n%s", err, gbnf);
    return g;
}

static bool complete_match(const bc_grammar *g, const char *s, size_t n) {
    bool prefix, complete;
    bc_grammar_match(g, s, n, &prefix, &complete);
    if (complete) assert_true(prefix);
    return complete;
}

static uint64_t rng_state = 88172645463325252ull;
static uint32_t rnd(void) {
    rng_state ^= rng_state << 13;
    rng_state ^= rng_state >> 7;
    rng_state ^= rng_state << 17;
    return (uint32_t)(rng_state >> 11);
}

/* ------------------------------------------------------------------------ */
/* Compile errors                                                           */
/* ------------------------------------------------------------------------ */

static void test_errors(void **state) {
    (void)state;
    static const struct {
        const char *gbnf, *want;
    } cases[] = {
        {"root ::= foo", "rule 'foo' is not defined"},
        {"rot ::= \"a\"", "no 'root' rule"},
        {"root ::= \"a", "line 1, column 10: string is not closed"},
        {"root ::= [a-", "character class is not closed"},
        {"root ::= [z-a]", "runs backwards"},
        {"root ::= (\"a\"", "group is not closed"},
        {"root ::= \"a\"\nroot ::= \"b\"", "line 2, column 1: rule 'root' is defined twice"},
        {"root ::= root \"a\" | \"b\"", "left recursion"},
        {"root ::= x\nx ::= y? \"b\"\ny ::= x \"c\"", "left recursion"},
        {"root ::= (\"a\"?)*", "left recursion"},
        {"root ::= \"a\" root", "matches no text"},
        {"root ::= [^\\x00-\\U0010FFFF]", "matches no character"},
        {"root ::= \"a\"{1001}", "above 1000"},
        {"root ::= \"a\"{3,2}", "n < m"},
        {"root ::= \"\\q\"", "unknown escape"},
        {"root ::= \"\\uD800\"", "no Unicode character"},
        {"root ::= <abc>", "token references"},
        {"root ::= \"a\" @", "unexpected character '@'"},
        {"root ::= (((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((((\"a\""
         ")))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))))",
         "nested more than 64"},
        {"root ::= (\"abcdefghij\"{1000}) (\"abcdefghij\"{1000}) (\"abcdefghij\"{1000}) (\"abcdefghij\"{1000}) "
         "(\"abcdefghij\"{1000}) (\"abcdefghij\"{1000}) (\"abcdefghij\"{1000})",
         "elements"},
        {"root ::= ::= \"a\"", "line 1, column 10"},
    };
    for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
        bc_grammar *g = (bc_grammar *)1;
        char err[512] = "";
        bc_status st = bc_grammar_init_gbnf(NULL, cases[i].gbnf, strlen(cases[i].gbnf), &g, err, sizeof err);
        if (st == BC_STATUS_OK || strstr(err, cases[i].want) == NULL)
            fail_msg("case %zu: status %d, message '%s', wanted '%s'", i, (int)st, err, cases[i].want);
        assert_null(g);
    }
    /* Malformed UTF-8 inside a literal. */
    const char bad[] = "root ::= \"\xC3\x28\"";
    bc_grammar *g = NULL;
    char err[256];
    assert_int_equal(bc_grammar_init_gbnf(NULL, bad, strlen(bad), &g, err, sizeof err), BC_STATUS_ERROR_ARGUMENT);
    assert_non_null(strstr(err, "malformed UTF-8"));
}

/* ------------------------------------------------------------------------ */
/* Whole matches against regcomp                                            */
/* ------------------------------------------------------------------------ */

static void test_against_regex(void **state) {
    (void)state;
    static const struct {
        const char *gbnf, *ere, *alphabet;
    } cases[] = {
        {"root ::= \"a\" [b-d]* (\"x\" | \"yz\")?", "^a[b-d]*(x|yz)?$", "abcdxyz"},
        {"root ::= (\"ab\" | \"c\"){2,4} \".\"", "^(ab|c){2,4}[.]$", "abc.x"},
        {"root ::= [^a]+ \"a\"", "^[^a]+a$", "abc"},
        {"root ::= x (\",\" x)*\nx ::= [0-9]+ | \"-\" [1-9] [0-9]{0,2}",
         "^([0-9]+|-[1-9][0-9]{0,2})(,([0-9]+|-[1-9][0-9]{0,2}))*$", "019-,"},
        {"root ::= (\"a\" | \"ab\") (\"bc\" | \"c\") \n  | \"d\"", "^((a|ab)(bc|c)|d)$", "abcd"},
        {"# a comment\nroot ::= ws \"{\" ws \"}\" ws # trailing\nws ::= [ \\t\\n]{0,3}",
         "^[ \t\n]{0,3}[{][ \t\n]{0,3}[}][ \t\n]{0,3}$", " \t\n{}"},
        {"root ::= \"x\"{3} \"y\"{1,} \"z\"{,2}", "^xxxy+z{0,2}$", "xyz"},
        {"root ::= (\"a\" | \"b\" |\n  \"c\")+ . ", "^[abc]+.$", "abcd"},
        {"root ::= (\"\\x41\" | \"\\u0042\" | \"\\\"\" | \"\\\\\" | [\\]\\[])+", "^[]AB\"\\\\[]+$", "AB\"\\[]x"},
    };
    for (size_t c = 0; c < sizeof cases / sizeof cases[0]; c++) {
        bc_grammar *g = compile(cases[c].gbnf, NULL);
        regex_t re;
        assert_int_equal(regcomp(&re, cases[c].ere, REG_EXTENDED | REG_NOSUB), 0);
        size_t n_alpha = strlen(cases[c].alphabet);
        int n_match = 0;
        for (int t = 0; t < 4000; t++) {
            char s[16];
            size_t n = rnd() % 10;
            for (size_t i = 0; i < n; i++) s[i] = cases[c].alphabet[rnd() % n_alpha];
            s[n] = 0;
            bool want = regexec(&re, s, 0, NULL, 0) == 0;
            bool got = complete_match(g, s, n);
            if (want != got) fail_msg("case %zu: '%s' regex %d grammar %d", c, s, want, got);
            n_match += got;
            if (got) /* every prefix of a match is a prefix */
                for (size_t k = 0; k <= n; k++) {
                    bool prefix;
                    bc_grammar_match(g, s, k, &prefix, NULL);
                    assert_true(prefix);
                }
        }
        if (n_match == 0) fail_msg("case %zu: no random string matched: the test says nothing", c);
        regfree(&re);
        bc_grammar_free(g);
    }
}

/* A recursive, non-regular language against a depth counter. */
static void test_balanced(void **state) {
    (void)state;
    bc_grammar *g = compile("root ::= item*\nitem ::= \"(\" root \")\" | \"[\" root \"]\"", NULL);
    int n_match = 0;
    for (int t = 0; t < 20000; t++) {
        char s[16], stack[16];
        size_t n = rnd() % 13;
        for (size_t i = 0; i < n; i++) s[i] = "()[]"[rnd() % 4];
        int depth = 0;
        bool ok = true, prefix_ok = true;
        for (size_t i = 0; i < n && ok; i++) {
            if (s[i] == '(' || s[i] == '[') {
                stack[depth++] = s[i];
            } else if (depth > 0 && stack[depth - 1] == (s[i] == ')' ? '(' : '[')) {
                depth--;
            } else {
                ok = prefix_ok = false;
            }
        }
        bool prefix, complete;
        bc_grammar_match(g, s, n, &prefix, &complete);
        assert_int_equal(complete, ok && depth == 0);
        assert_int_equal(prefix, prefix_ok);
        n_match += complete;
    }
    assert_true(n_match > 100);
    bc_grammar_free(g);
}

static void test_utf8(void **state) {
    (void)state;
    bc_grammar *g = compile("root ::= [α-ω]+ | [^a-z]", NULL);
    assert_true(complete_match(g, "αβω", strlen("αβω")));
    assert_false(complete_match(g, "αa", 3));
    assert_true(complete_match(g, "\xF0\x9F\x98\x80", 4)); /* U+1F600, a 4-byte character */
    assert_true(complete_match(g, "\xEF\xBF\xBF", 3));     /* U+FFFF */
    assert_true(complete_match(g, "\xC2\x80", 2));         /* U+0080 */
    assert_false(complete_match(g, "q", 1));
    assert_false(complete_match(g, "\xC0\x80", 2));         /* overlong */
    assert_false(complete_match(g, "\xED\xA0\x80", 3));     /* a surrogate */
    assert_false(complete_match(g, "\xF4\x90\x80\x80", 4)); /* past U+10FFFF */
    assert_false(complete_match(g, "\x80", 1));
    bool prefix;
    bc_grammar_match(g, "\xF0\x9F", 2, &prefix, NULL); /* half a character */
    assert_true(prefix);
    bc_grammar_free(g);
    g = compile("root ::= . . \"\\U0001F600\"", NULL);
    assert_true(complete_match(g, "a\xE4\xB8\x80\xF0\x9F\x98\x80", 8));
    assert_false(complete_match(g, "a\xF0\x9F\x98\x80", 5));
    bc_grammar_free(g);
}

/* ------------------------------------------------------------------------ */
/* Token masks against brute force                                          */
/* ------------------------------------------------------------------------ */

#define JSON_GBNF                                                                                                      \
    "root ::= ws value ws\n"                                                                                           \
    "value ::= object | array | string | number | \"true\" | \"false\" | \"null\"\n"                                   \
    "object ::= \"{\" ws ( member ( ws \",\" ws member )* ws )? \"}\"\n"                                               \
    "member ::= string ws \":\" ws value\n"                                                                            \
    "array ::= \"[\" ws ( value ( ws \",\" ws value )* ws )? \"]\"\n"                                                  \
    "string ::= \"\\\"\" ( [^\"\\\\\\x00-\\x1f] | \"\\\\\" ( [\"\\\\/bfnrt] | \"u\" [0-9a-fA-F]{4} ) )* \"\\\"\"\n"    \
    "number ::= \"-\"? ( \"0\" | [1-9] [0-9]{0,15} ) ( \".\" [0-9]{1,15} )? ( [eE] [-+]? [0-9]{1,3} )?\n"              \
    "ws ::= [ \\t\\n]{0,4}\n"

/* The bytes a piece adds to the text (as bc_detokenizer writes it): byte
 * pieces their byte, others their text with U+2581 as a space, dropping a
 * first piece's leading space when the model adds a dummy prefix. Returns
 * false for pieces that never belong in generated text. */
static bool piece_bytes(const bc_tokenizer *tok, int32_t id, bool first, char *out, size_t *n) {
    size_t len;
    bc_piece_type type;
    const char *p = bc_tokenizer_piece(tok, id, &len, &type);
    *n = 0;
    if (type == BC_PIECE_TYPE_BYTE) {
        unsigned v;
        if (sscanf(p, "<0x%2X>", &v) != 1) return false;
        out[(*n)++] = (char)v;
        return true;
    }
    if (type != BC_PIECE_TYPE_NORMAL && type != BC_PIECE_TYPE_USER_DEFINED) return false;
    bc_tokenizer_info info;
    bc_tokenizer_get_info(tok, &info);
    for (size_t i = 0; i < len;) {
        if (i + 3 <= len && memcmp(p + i, "\xE2\x96\x81", 3) == 0) {
            if (!(i == 0 && first && (info.add_dummy_prefix || info.remove_extra_whitespaces))) out[(*n)++] = ' ';
            i += 3;
        } else {
            out[(*n)++] = p[i++];
        }
    }
    return *n > 0;
}

static void check_masks(const char *gbnf, const bc_tokenizer *tok, int walks, int steps) {
    bc_grammar *g = compile(gbnf, tok);
    bc_tokenizer_info info;
    bc_tokenizer_get_info(tok, &info);
    const int V = info.n_vocab + 7; /* a model may have more ids than the tokenizer: never allowed */
    uint32_t *bits = malloc((size_t)(V + 31) / 32 * sizeof *bits);
    char *text = malloc(4096), *cand = malloc(4096 + 64);
    int32_t *allowed_ids = malloc((size_t)V * sizeof *allowed_ids);
    assert_non_null(bits);
    long n_checked = 0, n_allowed_total = 0;
    for (int w = 0; w < walks; w++) {
        bc_grammar_matcher *m = NULL;
        assert_int_equal(bc_grammar_matcher_init(g, &m), BC_STATUS_OK);
        size_t n_text = 0;
        for (int s = 0; s < steps; s++) {
            assert_int_equal(bc_grammar_matcher_allowed(m, bits, V), BC_STATUS_OK);
            int n_allowed = 0;
            for (int id = 0; id < V; id++) {
                bool got = (bits[id >> 5] >> (id & 31)) & 1;
                bool want;
                if (id >= info.n_vocab) {
                    want = false;
                } else if (id == info.eos_id) {
                    bool complete;
                    bc_grammar_match(g, text, n_text, NULL, &complete);
                    want = complete;
                } else {
                    size_t n;
                    want = piece_bytes(tok, id, n_text == 0, cand + n_text, &n);
                    if (want) {
                        memcpy(cand, text, n_text);
                        bc_grammar_match(g, cand, n_text + n, &want, NULL);
                    }
                }
                if (got != want)
                    fail_msg("walk %d step %d: id %d (%s) allowed %d, brute force %d, after '%.*s'", w, s, id,
                             bc_tokenizer_piece(tok, id, NULL, NULL) ? bc_tokenizer_piece(tok, id, NULL, NULL) : "?",
                             got, want, (int)n_text, text);
                if (got && id != info.eos_id) allowed_ids[n_allowed++] = id;
                n_checked++;
            }
            n_allowed_total += n_allowed;
            if (n_allowed == 0) break;
            int32_t id = allowed_ids[rnd() % n_allowed];
            size_t n;
            piece_bytes(tok, id, n_text == 0, text + n_text, &n);
            assert_int_equal(bc_grammar_matcher_accept(m, id), BC_STATUS_OK);
            n_text += n;
            if (n_text > 3000) break;
        }
        /* A piece that is not allowed is refused and changes nothing. */
        assert_int_equal(bc_grammar_matcher_accept(m, -1), BC_STATUS_ERROR_ARGUMENT);
        bc_grammar_matcher_free(m);
    }
    assert_true(n_allowed_total > steps); /* the walks went somewhere */
    (void)n_checked;
    free(bits);
    free(text);
    free(cand);
    free(allowed_ids);
    bc_grammar_free(g);
}

static bc_tokenizer *load_tok(void) {
    bc_tokenizer *tok = NULL;
    char err[512];
    if (bc_tokenizer_load(g_model_dir, &tok, err, sizeof err) != BC_STATUS_OK) fail_msg("%s", err);
    return tok;
}

static void test_masks_json(void **state) {
    (void)state;
    bc_tokenizer *tok = load_tok();
    check_masks(JSON_GBNF, tok, 4, 12);
    bc_tokenizer_free(tok);
}

static void test_masks_text(void **state) {
    (void)state;
    bc_tokenizer *tok = load_tok();
    /* Chinese text, spaces, and an ending: pieces that cross rule ends. */
    check_masks("root ::= \"答：\" [一-龥，。 a-z]{1,30} \"。\" ( \" 好\" | \"\\n\" )", tok, 3, 12);
    /* Strings and lists, deeper than the cache key. */
    check_masks("root ::= \"[\" item (\", \" item)* \"]\"\nitem ::= \"\\\"\" [^\"]* \"\\\"\" | root | [0-9]+", tok, 3,
                12);
    bc_tokenizer_free(tok);
}

/* An enum: hundreds of parses alive at the start. */
static void test_masks_enum(void **state) {
    (void)state;
    bc_tokenizer *tok = load_tok();
    size_t cap = 64 * 1024, len = 0;
    char *gbnf = malloc(cap);
    len += (size_t)snprintf(gbnf + len, cap - len, "root ::= \"\\\"\" (");
    for (int i = 0; i < 400; i++)
        len +=
            (size_t)snprintf(gbnf + len, cap - len, "%s\"%c%c%d\"", i ? " | " : "", 'a' + i % 26, 'a' + i / 26 % 26, i);
    snprintf(gbnf + len, cap - len, ") \"\\\"\"");
    check_masks(gbnf, tok, 1, 3);
    free(gbnf);
    bc_tokenizer_free(tok);
}

/* The sampler, greedy and sampling, only draws allowed ids and stops at
 * the end-of-sequence id only where the text matches. */
static void test_sampler(void **state) {
    (void)state;
    bc_tokenizer *tok = load_tok();
    bc_tokenizer_info info;
    bc_tokenizer_get_info(tok, &info);
    bc_grammar *g = compile("root ::= \"{\\\"n\\\": \" [1-9] [0-9]{0,3} \"}\"", tok);
    float *logits = malloc((size_t)info.n_vocab * sizeof *logits);
    for (int temp = 0; temp < 2; temp++)
        for (int seed = 0; seed < 5; seed++) {
            bc_sampler_params p = bc_sampler_default_params();
            p.temperature = (float)temp;
            p.seed = (uint64_t)seed;
            bc_sampler *s = NULL;
            bc_grammar_matcher *m = NULL;
            assert_int_equal(bc_sampler_init(p, info.n_vocab, &s), BC_STATUS_OK);
            assert_int_equal(bc_grammar_matcher_init(g, &m), BC_STATUS_OK);
            bc_sampler_set_grammar(s, m);
            int32_t ids[64];
            int n = 0;
            bool ended = false;
            while (n < 64) {
                for (int i = 0; i < info.n_vocab; i++) logits[i] = (float)(rnd() % 1000) / 100.0f;
                logits[info.eos_id] = 30; /* the model wants to stop at once */
                int32_t id = bc_sampler_sample(s, logits);
                assert_true(id >= 0);
                if (id == info.eos_id) {
                    ended = true;
                    break;
                }
                ids[n++] = id;
                bc_sampler_accept_generated(s, id);
            }
            assert_true(ended);
            char text[512];
            size_t len;
            assert_int_equal(bc_tokenizer_decode(tok, ids, (size_t)n, text, sizeof text, &len), BC_STATUS_OK);
            assert_true(complete_match(g, text, len));
            bc_sampler_free(s);
            bc_grammar_matcher_free(m);
        }
    free(logits);
    bc_grammar_free(g);
    bc_tokenizer_free(tok);
}

int main(int argc, char **argv) {
    if (argc > 1) g_model_dir = argv[1];
    /* Every bc_grammar_match makes and frees a matcher (some 180 KB of
     * tables). With glibc's default trim threshold each free at the top of
     * the heap gives the pages back (brk) and the next call faults them in
     * again: the brute-force checks below, millions of matches, spent most
     * of their time in the kernel. Keeping the heap changes no result. */
    mallopt(M_TRIM_THRESHOLD, 256 << 20);
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(test_errors),     cmocka_unit_test(test_against_regex), cmocka_unit_test(test_balanced),
        cmocka_unit_test(test_utf8),       cmocka_unit_test(test_masks_json),    cmocka_unit_test(test_masks_text),
        cmocka_unit_test(test_masks_enum), cmocka_unit_test(test_sampler),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
