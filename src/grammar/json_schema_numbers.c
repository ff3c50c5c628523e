/*
 * json_schema_numbers.c - the JSON texts of the integers and numbers
 * between a schema's bounds (minimum, maximum and their exclusive forms),
 * digit by digit, without an exponent.
 *
 *   integers                       digit-range decomposition of [lo, hi]
 *   numbers                        bounded integers; numbers compared digit by digit with the bounds
 */
#include "grammar/json_schema_numbers.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* Bounds of numbers are kept exact in a double up to 10^15. */
#define JS_MAX_BOUND 1e15

/* ======================================================================== */
/* Integers: [lo, hi] as digit strings                                      */
/* ======================================================================== */

/* The numbers of n digits from lo to hi (digit strings of one length),
 * as disjoint alternatives on the first digit where lo and hi differ. */
static void js_same_length(js_conv *c, js_buf *b, const char *lo, const char *hi, size_t n) {
    size_t i = 0;
    while (i < n && lo[i] == hi[i]) i++;
    if (i > 0) {
        char tmp[32];
        memcpy(tmp, lo, i);
        tmp[i] = '\0';
        bc__js_put_literal(c, b, tmp);
    }
    if (i == n) return;
    lo += i, hi += i, n -= i;
    size_t rest = n - 1;
    int lo_zeros = 1, hi_nines = 1;
    for (size_t k = 1; k < n; k++) {
        if (lo[k] != '0') lo_zeros = 0;
        if (hi[k] != '9') hi_nines = 0;
    }
    char nines[32], zeros[32];
    memset(nines, '9', rest), memset(zeros, '0', rest);
    char first = lo_zeros ? lo[0] : (char)(lo[0] + 1), last = hi_nines ? hi[0] : (char)(hi[0] - 1);
    bc__js_put(c, b, b->n > 0 && b->p[b->n - 1] != ' ' ? " ( " : "( ");
    int alts = 0;
    if (!lo_zeros) {
        char d[2] = {lo[0], '\0'};
        bc__js_put_literal(c, b, d);
        js_same_length(c, b, lo + 1, nines, rest);
        alts++;
    }
    if (first <= last) {
        if (alts++) bc__js_put(c, b, " | ");
        if (first == last)
            bc__js_putf(c, b, "\"%c\"", first);
        else
            bc__js_putf(c, b, "[%c-%c]", first, last);
        if (rest == 1) bc__js_put(c, b, " [0-9]");
        if (rest > 1) bc__js_putf(c, b, " [0-9]{%zu}", rest);
    }
    if (!hi_nines) {
        if (alts++) bc__js_put(c, b, " | ");
        char d[2] = {hi[0], '\0'};
        bc__js_put_literal(c, b, d);
        js_same_length(c, b, zeros, hi + 1, rest);
    }
    bc__js_put(c, b, " )");
}

/* The decimal numbers (no sign, no leading zeros) in [lo, hi]; hi < 0 is no
 * upper bound. Appends a parenthesised group of alternatives. */
static void js_range(js_conv *c, js_buf *b, int64_t lo, int64_t hi) {
    char los[32], his[32];
    int nlo = snprintf(los, sizeof los, "%lld", (long long)lo);
    int nhi = hi >= 0 ? snprintf(his, sizeof his, "%lld", (long long)hi) : nlo;
    bc__js_put(c, b, b->n > 0 && b->p[b->n - 1] != ' ' ? " ( " : "( ");
    for (int len = nlo; len <= nhi; len++) {
        char a[32], z[32];
        if (len == nlo)
            memcpy(a, los, (size_t)len);
        else
            a[0] = '1', memset(a + 1, '0', (size_t)len - 1);
        if (hi >= 0 && len == nhi)
            memcpy(z, his, (size_t)len);
        else
            memset(z, '9', (size_t)len);
        if (len > nlo) bc__js_put(c, b, " | ");
        js_same_length(c, b, a, z, (size_t)len);
    }
    if (hi < 0) bc__js_putf(c, b, " | [1-9] [0-9]{%d,}", nlo);
    bc__js_put(c, b, " )");
}

/* ======================================================================== */
/* Numbers                                                                  */
/* ======================================================================== */

typedef struct js_bound {
    int present;
    double v;
    int exclusive;
} js_bound;

/* Reads minimum/exclusiveMinimum (or the maximum pair) into one bound, the
 * tighter of the two. */
static void js_read_bound(js_conv *c, const json_t *s, const char *incl, const char *excl, int upper, js_bound *out) {
    memset(out, 0, sizeof *out);
    const char *keys[2] = {incl, excl};
    for (int k = 0; k < 2; k++) {
        const json_t *v = json_object_get(s, keys[k]);
        if (v == NULL) continue;
        if (!json_is_number(v)) {
            bc__js_fail(c, "'%s' must be a number", keys[k]);
            return;
        }
        double x = json_number_value(v);
        if (!(fabs(x) <= JS_MAX_BOUND)) {
            bc__js_fail(c, "'%s' %g is out of the supported range [-1e15, 1e15]", keys[k], x);
            return;
        }
        int tighter = !out->present || (upper ? x < out->v : x > out->v) || (x == out->v && k == 1);
        if (tighter) out->present = 1, out->v = x, out->exclusive = k == 1;
    }
}

/* A non-negative decimal: integer part and exactly k fraction digits. */
typedef struct js_dec {
    int64_t ip;
    char frac[20];
} js_dec;

/* The fraction digits x needs to be written exactly (shortest round trip), or -1. */
static int js_frac_digits(double x) {
    char tmp[64];
    for (int k = 0; k <= 17; k++) {
        snprintf(tmp, sizeof tmp, "%.*f", k, fabs(x));
        if (strtod(tmp, NULL) == fabs(x)) return k;
    }
    return -1;
}

/* |x| with k fraction digits (k at least js_frac_digits(x)). */
static void js_dec_of(double x, int k, js_dec *d) {
    char tmp[64];
    snprintf(tmp, sizeof tmp, "%.*f", k, fabs(x));
    d->ip = strtoll(tmp, NULL, 10);
    const char *dot = strchr(tmp, '.');
    snprintf(d->frac, sizeof d->frac, "%s", dot ? dot + 1 : "");
}

/* The fraction's text after the integer part, when the digits so far equal
 * lo's (lt) and hi's (ht): one state of a digit-by-digit comparison of the
 * first k fraction digits (missing ones are zeros), then the digits past k
 * decide only where the value sits exactly on a bound. */
typedef struct js_frac {
    const char *lo, *hi; /* k digits each, or NULL: no bound on that side */
    int lo_excl, hi_excl, k;
    long memo[20][2][2]; /* rule of each state from digit 1 on: -2 not made, -1 empty */
} js_frac;

static int js_frac_state(js_conv *c, js_frac *f, js_buf *b, int pos, int lt, int ht, int need_digit);

/* Appends the rule of state (pos, lt, ht), ending allowed, made once; 0 when it matches nothing. */
static int js_frac_ref(js_conv *c, js_frac *f, js_buf *b, int pos, int lt, int ht) {
    if (!lt && !ht) { /* no bound left: any digits */
        bc__js_put(c, b, " [0-9]*");
        return 1;
    }
    long *m = &f->memo[pos][lt][ht];
    if (*m == -2) {
        js_buf sub = {0};
        int n = js_frac_state(c, f, &sub, pos, lt, ht, 0);
        if (n == 0 || c->status != BC_STATUS_OK) {
            bc__js_buf_free(&sub);
            *m = -1;
        } else {
            *m = bc__js_rule_new(c, "fraction");
            bc__js_rule_set(c, *m, &sub, NULL);
        }
    }
    if (*m < 0) return 0;
    bc__js_put(c, b, " ");
    bc__js_put(c, b, c->rules[*m].name);
    return 1;
}

static int js_frac_state(js_conv *c, js_frac *f, js_buf *b, int pos, int lt, int ht, int need_digit) {
    int alts = 0;
    if (pos == f->k) { /* past the compared digits: zero or not is all that counts */
        int zero_ok = !(lt && f->lo_excl) && !(ht && f->hi_excl), nonzero_ok = !ht;
        const char *g = NULL;
        if (zero_ok && nonzero_ok)
            g = need_digit ? "[0-9]+" : "[0-9]*";
        else if (nonzero_ok)
            g = "\"0\"* [1-9] [0-9]*";
        else if (zero_ok)
            g = need_digit ? "\"0\"+" : "\"0\"*";
        if (g != NULL) bc__js_put(c, b, g), alts++;
        return alts;
    }
    /* Ending here: the rest are zeros. */
    int lo_rest_zero = 1, hi_rest_zero = 1;
    for (int i = pos; i < f->k; i++) {
        if (lt && f->lo[i] != '0') lo_rest_zero = 0;
        if (ht && f->hi[i] != '0') hi_rest_zero = 0;
    }
    int end_ok = !need_digit && (!lt || (lo_rest_zero && !f->lo_excl)) && (!ht || !hi_rest_zero || !f->hi_excl);
    if (end_ok) bc__js_put(c, b, "\"\""), alts++;
    char d_lo = lt ? f->lo[pos] : '0', d_hi = ht ? f->hi[pos] : '9';
    if (lt && ht && d_lo == d_hi) {
        js_buf alt = {0};
        bc__js_putf(c, &alt, "\"%c\"", d_lo);
        if (js_frac_ref(c, f, &alt, pos + 1, 1, 1)) {
            if (alts++) bc__js_put(c, b, " | ");
            bc__js_put_expr(c, b, &alt);
        }
        bc__js_buf_free(&alt);
        return alts;
    }
    char mid_lo = lt ? (char)(d_lo + 1) : '0', mid_hi = ht ? (char)(d_hi - 1) : '9';
    if (mid_lo <= mid_hi) {
        if (alts++) bc__js_put(c, b, " | ");
        bc__js_putf(c, b, "[%c-%c] [0-9]*", mid_lo, mid_hi);
    }
    for (int side = 0; side < 2; side++) {
        if (!(side == 0 ? lt : ht)) continue;
        js_buf alt = {0};
        bc__js_putf(c, &alt, "\"%c\"", side == 0 ? d_lo : d_hi);
        if (js_frac_ref(c, f, &alt, pos + 1, side == 0, side == 1)) {
            if (alts++) bc__js_put(c, b, " | ");
            bc__js_put_expr(c, b, &alt);
        }
        bc__js_buf_free(&alt);
    }
    return alts;
}

/* After integer part ip: nothing, or "." and the digits of state (0, lt, ht). */
static int js_fraction(js_conv *c, js_buf *b, int64_t ip, const js_dec *lo, int lo_excl, const js_dec *hi, int hi_excl,
                       int k) {
    js_frac f = {lo ? lo->frac : NULL, hi ? hi->frac : NULL, lo_excl, hi_excl, k, {{{0}}}};
    for (int i = 0; i < 20; i++) f.memo[i][0][0] = f.memo[i][0][1] = f.memo[i][1][0] = f.memo[i][1][1] = -2;
    js_buf alts = {0}, digits = {0};
    int n = 0;
    /* No fraction is the value ip exactly: as ending at digit 0. */
    int lo_zero = 1, hi_zero = 1;
    for (int i = 0; i < k; i++) {
        if (lo && lo->frac[i] != '0') lo_zero = 0;
        if (hi && hi->frac[i] != '0') hi_zero = 0;
    }
    if ((!lo || (lo_zero && !lo_excl)) && (!hi || !hi_zero || !hi_excl)) bc__js_put(c, &alts, "\"\""), n++;
    if (js_frac_state(c, &f, &digits, 0, lo != NULL, hi != NULL, 1) > 0) {
        if (n++) bc__js_put(c, &alts, " | ");
        bc__js_put(c, &alts, "\".\" ( ");
        bc__js_putn(c, &alts, digits.p, digits.n);
        bc__js_put(c, &alts, " )");
    }
    if (n > 0) {
        if (b->n > 0 && b->p[b->n - 1] != ' ') bc__js_put(c, b, " | ");
        js_range(c, b, ip, ip);
        bc__js_put(c, b, " ( ");
        bc__js_putn(c, b, alts.p, alts.n);
        bc__js_put(c, b, " )");
    }
    bc__js_buf_free(&alts);
    bc__js_buf_free(&digits);
    return n > 0;
}

/* Numbers written m or m.fff (magnitude m >= 0, no sign, no exponent) in
 * [lo, hi] (hi NULL: no upper bound) with exclusive ends where said.
 * Appends alternatives separated by " | "; returns how many. */
static int js_magnitude(js_conv *c, js_buf *b, const js_dec *lo, int lo_excl, const js_dec *hi, int hi_excl, int k) {
    if (hi != NULL && (hi->ip < lo->ip || (hi->ip == lo->ip && strcmp(hi->frac, lo->frac) < 0))) return 0;
    if (hi != NULL && hi->ip == lo->ip) return js_fraction(c, b, lo->ip, lo, lo_excl, hi, hi_excl, k);
    int alts = js_fraction(c, b, lo->ip, lo, lo_excl, NULL, 0, k);
    if (hi == NULL || lo->ip + 1 <= hi->ip - 1) { /* integer parts strictly between: any fraction */
        if (alts++) bc__js_put(c, b, " | ");
        js_range(c, b, lo->ip + 1, hi ? hi->ip - 1 : -1);
        bc__js_use(c, b, FX_FRACTION);
    }
    if (hi != NULL) alts += js_fraction(c, b, hi->ip, NULL, 0, hi, hi_excl, k);
    return alts;
}

void bc__js_number(js_conv *c, const json_t *s, int integer, js_buf *out) {
    js_bound lo, hi;
    js_read_bound(c, s, "minimum", "exclusiveMinimum", 0, &lo);
    js_read_bound(c, s, "maximum", "exclusiveMaximum", 1, &hi);
    if (c->status != BC_STATUS_OK) return;
    if (!lo.present && !hi.present) {
        bc__js_use(c, out, integer ? FX_INTEGER : FX_NUMBER);
        return;
    }
    js_buf b = {0};
    int alts = 0;
    if (integer) {
        /* Integral bounds; then the non-negative side m in [max(lo, 0), hi]
         * and the negative side "-" m with m in [max(-hi, 0), -lo]. */
        int64_t ilo = 0, ihi = 0;
        if (lo.present) ilo = (int64_t)(lo.exclusive ? floor(lo.v) + 1 : ceil(lo.v));
        if (hi.present) ihi = (int64_t)(hi.exclusive ? ceil(hi.v) - 1 : floor(hi.v));
        if (!hi.present || ihi >= 0) {
            int64_t a = lo.present && ilo > 0 ? ilo : 0;
            if (!hi.present || a <= ihi) {
                js_range(c, &b, a, hi.present ? ihi : -1);
                alts++;
            }
        }
        if (!lo.present || ilo <= 0) {
            int64_t a = hi.present && ihi < 0 ? -ihi : 0;
            if (!lo.present || a <= -ilo) {
                if (alts++) bc__js_put(c, &b, " | ");
                bc__js_put(c, &b, "\"-\"");
                js_range(c, &b, a, lo.present ? -ilo : -1);
            }
        }
    } else {
        /* Both bounds written with the same k fraction digits. */
        int k = 0;
        const js_bound *bounds[2] = {&lo, &hi};
        for (int i = 0; i < 2; i++) {
            if (!bounds[i]->present) continue;
            int d = js_frac_digits(bounds[i]->v);
            if (d < 0) {
                bc__js_fail(c, "the bound %.17g has no exact decimal form", bounds[i]->v);
                bc__js_buf_free(&b);
                return;
            }
            if (d > k) k = d;
        }
        js_dec L, U, zero = {0, ""};
        memset(zero.frac, '0', (size_t)k);
        zero.frac[k] = '\0';
        if (lo.present) js_dec_of(lo.v, k, &L);
        if (hi.present) js_dec_of(hi.v, k, &U);
        /* Non-negative side: m = x in [max(lo, 0), hi]. */
        if (!hi.present || hi.v >= 0) {
            int from_lo = lo.present && lo.v >= 0;
            alts += js_magnitude(c, &b, from_lo ? &L : &zero, from_lo && lo.exclusive, hi.present ? &U : NULL,
                                 hi.exclusive, k);
        }
        /* Negative side: x = -m with m in [max(-hi, 0), -lo]. */
        if (!lo.present || lo.v <= 0) {
            int from_hi = hi.present && hi.v <= 0;
            js_buf neg = {0};
            int n = js_magnitude(c, &neg, from_hi ? &U : &zero, from_hi && hi.exclusive, lo.present ? &L : NULL,
                                 lo.exclusive, k);
            if (n > 0) {
                if (alts++) bc__js_put(c, &b, " | ");
                bc__js_put(c, &b, "\"-\" ( ");
                bc__js_putn(c, &b, neg.p, neg.n);
                bc__js_put(c, &b, " )");
            }
            bc__js_buf_free(&neg);
        }
    }
    if (alts == 0) {
        bc__js_fail(c, "no %s lies between the minimum and the maximum", integer ? "integer" : "number");
        bc__js_buf_free(&b);
        return;
    }
    bc__js_rule_add(c, integer ? "integer" : "number", &b, out);
}
