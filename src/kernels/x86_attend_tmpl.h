/*
 * x86_attend_tmpl.h - template of the x86 part kernel of tiled attention
 * (attend.h), included by x86_attend.c once per vector width with:
 *   ATT_W       8 (AVX2, __m256) or 16 (AVX-512, __m512): lanes of f32
 *   ATT_SFX     the suffix of the generated names
 *   ATT_TARGET  the target attribute string
 *
 * Rows are read W values at a time and converted to f32 exactly (f16 with
 * vcvtph2ps; q8_0 as int8 -> int32 -> f32 times the block's d, a product of
 * at most 19 significant bits), so every dtype shares the arithmetic of f32.
 * For each row of the tile and key of the segment:
 *   score    q . k_j on one FMA chain of W lanes over the values in order;
 *            the lanes added as (i + i+8) at W = 16, then as
 *            ((0+1)+(2+3))+((4+5)+(6+7)); times scale, plus slope * (j - pos)
 *            with ALiBi
 *   softmax  in chunks of W keys from the segment's start: the maximum, then
 *            exp(s - max) (exp_neg below) summed lane by lane over the
 *            chunks, the lanes added as the scores' are
 *   V        per output value one FMA chain over the keys in order
 * The tiles share loads between rows and keys (QK_RT rows x 4 keys of
 * scores, PV_RT rows x 4 registers of V outputs; 1 x 8 keys and 1 x 8
 * registers for a row alone) without changing any row's arithmetic. A row
 * of a tile runs on past its last key up to the tile's last key with weight
 * exactly 0 on rows the prompt wrote, which adds exactly 0.
 */
#define ATT_CAT_(a, b) a##b
#define ATT_CAT(a, b)  ATT_CAT_(a, b)
#define ATT_FN(name)   ATT_CAT(name, ATT_SFX)
#define ATT_ATTR       __attribute__((target(ATT_TARGET)))
#define ATT_INLINE     static inline __attribute__((always_inline, target(ATT_TARGET)))

#if ATT_W == 8
#define VF             __m256
#define V_ZERO()       _mm256_setzero_ps()
#define V_SET1(x)      _mm256_set1_ps(x)
#define V_LOADU(p)     _mm256_loadu_ps(p)
#define V_STOREU(p, v) _mm256_storeu_ps(p, v)
#define V_BCAST(p)     _mm256_broadcast_ss(p)
#define V_FMA          _mm256_fmadd_ps
#define V_FNMA         _mm256_fnmadd_ps
#define V_MUL          _mm256_mul_ps
#define V_ADD          _mm256_add_ps
#define V_SUB          _mm256_sub_ps
#define V_MAX          _mm256_max_ps
#define QK_RT          3
#define PV_RT          2
#else
#define VF             __m512
#define V_ZERO()       _mm512_setzero_ps()
#define V_SET1(x)      _mm512_set1_ps(x)
#define V_LOADU(p)     _mm512_loadu_ps(p)
#define V_STOREU(p, v) _mm512_storeu_ps(p, v)
#define V_BCAST(p)     _mm512_set1_ps(*(p))
#define V_FMA          _mm512_fmadd_ps
#define V_FNMA         _mm512_fnmadd_ps
#define V_MUL          _mm512_mul_ps
#define V_ADD          _mm512_add_ps
#define V_SUB          _mm512_sub_ps
#define V_MAX          _mm512_max_ps
#define QK_RT          4
#define PV_RT          4
#endif

/* Values i .. i + W - 1 (i % W == 0) of a row of dtype as f32. */
ATT_INLINE VF ATT_FN(load_)(const bc_dtype dtype, const uint8_t *row, int i) {
    if (dtype == BC_DTYPE_F32) return V_LOADU((const float *)row + i);
    const bc__block_q8_0 *b = (const bc__block_q8_0 *)row + i / 32;
#if ATT_W == 8
    if (dtype == BC_DTYPE_F16) return _mm256_cvtph_ps(_mm_loadu_si128((const __m128i *)((const uint16_t *)row + i)));
    const __m256i q = _mm256_cvtepi8_epi32(_mm_loadl_epi64((const __m128i *)(b->qs + i % 32)));
    return _mm256_mul_ps(_mm256_set1_ps(F16C(b->d)), _mm256_cvtepi32_ps(q));
#else
    if (dtype == BC_DTYPE_F16) return _mm512_cvtph_ps(_mm256_loadu_si256((const __m256i *)((const uint16_t *)row + i)));
    const __m512i q = _mm512_cvtepi8_epi32(_mm_loadu_si128((const __m128i *)(b->qs + i % 32)));
    return _mm512_mul_ps(_mm512_set1_ps(F16C(b->d)), _mm512_cvtepi32_ps(q));
#endif
}

/* The lanes folded to 8: lane i + lane i + 8 at W = 16. */
ATT_INLINE __m256 ATT_FN(fold8_)(VF v) {
#if ATT_W == 8
    return v;
#else
    return _mm256_add_ps(_mm512_castps512_ps256(v), _mm256_castpd_ps(_mm512_extractf64x4_pd(_mm512_castps_pd(v), 1)));
#endif
}

/* The sums of the lanes of a0..a3: folded to 8, then each 8 as
 * ((0+1)+(2+3))+((4+5)+(6+7)). */
ATT_INLINE __m128 ATT_FN(sum4_)(VF a0, VF a1, VF a2, VF a3) {
    const __m256 h = _mm256_hadd_ps(_mm256_hadd_ps(ATT_FN(fold8_)(a0), ATT_FN(fold8_)(a1)),
                                    _mm256_hadd_ps(ATT_FN(fold8_)(a2), ATT_FN(fold8_)(a3)));
    return _mm_add_ps(_mm256_castps256_ps128(h), _mm256_extractf128_ps(h, 1));
}

/* exp(x) for lanes x <= 0 (-inf included: 0), to about 1 ulp: x = n ln2 + r
 * with |r| <= ln2 / 2 (ln2 in two parts, the first exact in few bits), e^r
 * by a degree-7 series fitted on that interval, times 2^n through the
 * exponent bits; below -87 (where e^x nears the smallest normal) 0. */
ATT_INLINE VF ATT_FN(exp_neg_)(VF x) {
    const VF lo = V_SET1(-87.0f);
#if ATT_W == 8
    const __m256 small = _mm256_cmp_ps(x, lo, _CMP_LT_OQ);
    x = _mm256_max_ps(x, lo);
    const VF n =
        _mm256_round_ps(_mm256_mul_ps(x, V_SET1(1.44269504088896341f)), _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#else
    const __mmask16 small = _mm512_cmp_ps_mask(x, lo, _CMP_LT_OQ);
    x = _mm512_max_ps(x, lo);
    const VF n = _mm512_roundscale_ps(_mm512_mul_ps(x, V_SET1(1.44269504088896341f)),
                                      _MM_FROUND_TO_NEAREST_INT | _MM_FROUND_NO_EXC);
#endif
    VF r = V_FNMA(n, V_SET1(0.693359375f), x);
    r = V_FNMA(n, V_SET1(-2.12194440e-4f), r);
    VF y = V_SET1(1.9875691500e-4f);
    y = V_FMA(y, r, V_SET1(1.3981999507e-3f));
    y = V_FMA(y, r, V_SET1(8.3334519073e-3f));
    y = V_FMA(y, r, V_SET1(4.1665795894e-2f));
    y = V_FMA(y, r, V_SET1(1.6666665459e-1f));
    y = V_FMA(y, r, V_SET1(5.0000001201e-1f));
    y = V_FMA(y, V_MUL(r, r), V_ADD(r, V_SET1(1.0f)));
#if ATT_W == 8
    const __m256i e = _mm256_slli_epi32(_mm256_add_epi32(_mm256_cvtps_epi32(n), _mm256_set1_epi32(127)), 23);
    return _mm256_andnot_ps(small, _mm256_mul_ps(y, _mm256_castsi256_ps(e)));
#else
    const __m512i e = _mm512_slli_epi32(_mm512_add_epi32(_mm512_cvtps_epi32(n), _mm512_set1_epi32(127)), 23);
    return _mm512_maskz_mul_ps((__mmask16)~small, y, _mm512_castsi512_ps(e));
#endif
}

/* dots[r * BC__ATT_SEGMENT + c] = q_r . krow[c] for RT rows (qr) and KT
 * keys (4 or 8). */
ATT_INLINE void ATT_FN(qk_block_)(const bc_dtype dtype, const float *const *qr, const int RT,
                                  const uint8_t *const *krow, const int KT, int D, float *dots) {
    VF acc[QK_RT][8];
    for (int r = 0; r < RT; r++)
        for (int c = 0; c < KT; c++) acc[r][c] = V_ZERO();
    for (int d = 0; d < D; d += ATT_W) {
        VF q[QK_RT];
        for (int r = 0; r < RT; r++) q[r] = V_LOADU(qr[r] + d);
        for (int c = 0; c < KT; c++) {
            const VF k = ATT_FN(load_)(dtype, krow[c], d);
            for (int r = 0; r < RT; r++) acc[r][c] = V_FMA(q[r], k, acc[r][c]);
        }
    }
    for (int r = 0; r < RT; r++)
        for (int c = 0; c < KT; c += 4)
            _mm_storeu_ps(dots + r * BC__ATT_SEGMENT + c,
                          ATT_FN(sum4_)(acc[r][c], acc[r][c + 1], acc[r][c + 2], acc[r][c + 3]));
}

/* Asks for the cache lines of the key and value rows of position j, which
 * are scattered over the pool (a head's part of a row, blocks anywhere): the
 * hardware's stride prefetch sees only 16 rows of a block in a row. */
ATT_INLINE void ATT_FN(prefetch_)(const bc__kv_rows *k, const bc__kv_rows *v, int j, int row_len) {
    const char *kr = (const char *)bc__kv_row(k, j), *vr = (const char *)bc__kv_row(v, j);
    for (int b = 0; b < row_len; b += 64) {
        _mm_prefetch(kr + b, _MM_HINT_T0);
        _mm_prefetch(vr + b, _MM_HINT_T0);
    }
}

/* The dots of RT rows (qr) with the keys j0 .. j0 + nk - 1, KT at a time
 * (a last short group repeats its last key; those dots are never used).
 * With fetch (the first rows of a tile), the keys and values a few groups
 * ahead are fetched meanwhile, so that these scores, the other rows' and the
 * sums over V find them in cache. */
ATT_INLINE void ATT_FN(qk_rows_)(const bc_dtype dtype, const float *const *qr, const int RT, const int KT,
                                 const bc__kv_rows *k, const bc__kv_rows *v, int j0, int nk, int D, bool fetch,
                                 float *dots) {
    const int row_len = dtype == BC_DTYPE_F32 ? 4 * D : dtype == BC_DTYPE_F16 ? 2 * D : D / 32 * 34, ahead = 16;
    for (int j = 0; fetch && j < ahead && j < nk; j++) ATT_FN(prefetch_)(k, v, j0 + j, row_len);
    for (int j = 0; j < nk; j += KT) {
        for (int c = 0; fetch && c < KT && j + ahead + c < nk; c++)
            ATT_FN(prefetch_)(k, v, j0 + j + ahead + c, row_len);
        const uint8_t *krow[8];
        for (int c = 0; c < KT; c++) krow[c] = bc__kv_row(k, j0 + (j + c < nk ? j + c : nk - 1));
        ATT_FN(qk_block_)(dtype, qr, RT, krow, KT, D, dots + j);
    }
}

/* o_r[d0 .. d0 + W * NV - 1] = sum_j p_r[j] * v_{j0 + j}[...] over j < nk
 * for RT rows. */
ATT_INLINE void ATT_FN(pv_block_)(const bc_dtype dtype, const float *const *pr, const int RT, const int NV,
                                  const bc__kv_rows *v, int j0, int nk, int d0, float *const *orow) {
    VF acc[PV_RT][8];
    for (int r = 0; r < RT; r++)
        for (int c = 0; c < NV; c++) acc[r][c] = V_ZERO();
    for (int j = 0; j < nk;) {
        const uint8_t *row;
        for (int run = bc__kv_run(v, j0 + j, j0 + nk, &row); run > 0; run--, j++, row += v->row_stride) {
            VF p[PV_RT];
            for (int r = 0; r < RT; r++) p[r] = V_BCAST(pr[r] + j);
            for (int c = 0; c < NV; c++) {
                const VF x = ATT_FN(load_)(dtype, row, d0 + ATT_W * c);
                for (int r = 0; r < RT; r++) acc[r][c] = V_FMA(p[r], x, acc[r][c]);
            }
        }
    }
    for (int r = 0; r < RT; r++)
        for (int c = 0; c < NV; c++) V_STOREU(orow[r] + d0 + ATT_W * c, acc[r][c]);
}

/* Scores to weights for one row with n valid keys (dots at s): scale,
 * ALiBi, the maximum, exp and the sum; the weights replace the dots and are
 * 0 from n up to the next multiple of W and up to `upto`. */
ATT_INLINE void ATT_FN(softmax_row_)(float *s, int n, int upto, float scale, const float *slope, int j0, int pos,
                                     float *m, float *l) {
    const VF vscale = V_SET1(scale), ninf = V_SET1(-INFINITY);
    VF vmax = ninf;
    for (int c = 0; c < n; c += ATT_W) {
        VF x = V_MUL(V_LOADU(s + c), vscale);
#if ATT_W == 8
        const __m256i lane = _mm256_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7);
        if (slope) {
            const __m256i dj = _mm256_add_epi32(lane, _mm256_set1_epi32(j0 + c - pos));
            x = V_ADD(x, V_MUL(V_SET1(*slope), _mm256_cvtepi32_ps(dj)));
        }
        const __m256i valid = _mm256_cmpgt_epi32(_mm256_set1_epi32(n - c), lane);
        x = _mm256_blendv_ps(ninf, x, _mm256_castsi256_ps(valid));
#else
        if (slope) {
            const __m512i lane = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11, 12, 13, 14, 15);
            const __m512i dj = _mm512_add_epi32(lane, _mm512_set1_epi32(j0 + c - pos));
            x = V_ADD(x, V_MUL(V_SET1(*slope), _mm512_cvtepi32_ps(dj)));
        }
        const __mmask16 valid = n - c >= 16 ? (__mmask16)0xFFFF : (__mmask16)((1u << (n - c)) - 1);
        x = _mm512_mask_blend_ps(valid, ninf, x);
#endif
        V_STOREU(s + c, x);
        vmax = V_MAX(vmax, x);
    }
#if ATT_W == 8
    __m128 h = _mm_max_ps(_mm256_castps256_ps128(vmax), _mm256_extractf128_ps(vmax, 1));
    h = _mm_max_ps(h, _mm_movehl_ps(h, h));
    h = _mm_max_ss(h, _mm_movehdup_ps(h));
    const float max = _mm_cvtss_f32(h);
#else
    const float max = _mm512_reduce_max_ps(vmax); /* exact in any order */
#endif
    const VF vm = V_SET1(max);
    VF vsum = V_ZERO();
    int c = 0;
    for (; c < n; c += ATT_W) {
        const VF p = ATT_FN(exp_neg_)(V_SUB(V_LOADU(s + c), vm));
        V_STOREU(s + c, p);
        vsum = V_ADD(vsum, p);
    }
    for (; c < upto; c++) s[c] = 0.0f;
    *m = max;
    *l = _mm_cvtss_f32(ATT_FN(sum4_)(vsum, V_ZERO(), V_ZERO(), V_ZERO()));
}

/* The outputs of RT rows (RT constant), NV registers at a time where they
 * fit, fewer for the rest (D % 32 == 0). */
ATT_INLINE void ATT_FN(pv_rows_)(const bc_dtype dtype, const float *const *pr, const int RT, const int NV,
                                 const bc__kv_rows *v, int j0, int nk, int D, float *const *orow) {
    for (int d0 = 0; d0 < D;) {
        const int left = (D - d0) / ATT_W;
        if (left >= NV) {
            ATT_FN(pv_block_)(dtype, pr, RT, NV, v, j0, nk, d0, orow);
            d0 += NV * ATT_W;
        } else if (left >= 4) {
            ATT_FN(pv_block_)(dtype, pr, RT, 4, v, j0, nk, d0, orow);
            d0 += 4 * ATT_W;
        } else if (left >= 2) {
            ATT_FN(pv_block_)(dtype, pr, RT, 2, v, j0, nk, d0, orow);
            d0 += 2 * ATT_W;
        } else {
            ATT_FN(pv_block_)(dtype, pr, RT, 1, v, j0, nk, d0, orow);
            d0 += ATT_W;
        }
    }
}

ATT_INLINE void ATT_FN(part_)(const bc_dtype dtype, const bc__att_tile *t, const bc__att_head *h, int seg,
                              float *scratch, float *m, float *l, float *o) {
    const int D = h->D, R = t->n_rows, j0 = seg * BC__ATT_SEGMENT, end = j0 + BC__ATT_SEGMENT;
    int nk[BC__ATT_MAX_ROWS]; /* keys of row r in the segment: j0 .. j0 + nk[r] - 1 */
    int first = R;            /* the rows before it have no key here */
    for (int r = R - 1; r >= 0; r--) {
        const int e = t->pos0 + r + 1 < end ? t->pos0 + r + 1 : end;
        nk[r] = e - j0;
        if (nk[r] > 0) first = r;
    }
    for (int r = 0; r < first; r++) {
        m[r] = -INFINITY;
        l[r] = 0.0f;
        memset(o + (size_t)r * (size_t)D, 0, (size_t)D * sizeof(float));
    }
    /* scores: QK_RT rows at a time with keys in fours, fewer rows for the
     * rest; a lone row takes keys in eights */
    for (int r = first; r < R;) {
        const int RT = R - r >= QK_RT ? QK_RT : R - r;
        const float *qr[QK_RT];
        for (int i = 0; i < RT; i++) qr[i] = t->q + (size_t)(r + i) * t->q_stride;
        float *dots = scratch + (size_t)r * BC__ATT_SEGMENT;
        const int n = nk[r + RT - 1];
        switch (RT) {
#if QK_RT == 4
        case 4: ATT_FN(qk_rows_)(dtype, qr, 4, 4, &h->k, &h->v, j0, n, D, r == first, dots); break;
#endif
        case 3: ATT_FN(qk_rows_)(dtype, qr, 3, 4, &h->k, &h->v, j0, n, D, r == first, dots); break;
        case 2: ATT_FN(qk_rows_)(dtype, qr, 2, 4, &h->k, &h->v, j0, n, D, r == first, dots); break;
        default: ATT_FN(qk_rows_)(dtype, qr, 1, 8, &h->k, &h->v, j0, n, D, r == first, dots); break;
        }
        r += RT;
    }
    for (int r = first; r < R; r++) ATT_FN(softmax_row_)
    (scratch + (size_t)r * BC__ATT_SEGMENT, nk[r], nk[r + PV_RT - 1 < R ? r + PV_RT - 1 : R - 1], h->scale, h->slope,
     j0, t->pos0 + r, &m[r], &l[r]);
    /* V: PV_RT rows at a time, 4 registers of outputs; a lone row 8 */
    for (int r = first; r < R;) {
        const int RT = R - r >= PV_RT ? PV_RT : R - r;
        const float *pr[PV_RT];
        float *orow[PV_RT];
        for (int i = 0; i < RT; i++) {
            pr[i] = scratch + (size_t)(r + i) * BC__ATT_SEGMENT;
            orow[i] = o + (size_t)(r + i) * (size_t)D;
        }
        const int n = nk[r + RT - 1];
        switch (RT) {
#if PV_RT == 4
        case 4: ATT_FN(pv_rows_)(dtype, pr, 4, 4, &h->v, j0, n, D, orow); break;
        case 3: ATT_FN(pv_rows_)(dtype, pr, 3, 4, &h->v, j0, n, D, orow); break;
#endif
        case 2: ATT_FN(pv_rows_)(dtype, pr, 2, 4, &h->v, j0, n, D, orow); break;
        default: ATT_FN(pv_rows_)(dtype, pr, 1, 8, &h->v, j0, n, D, orow); break;
        }
        r += RT;
    }
}

/* One copy per dtype (keys and values share it), the branches folded away. */
static ATT_ATTR void ATT_FN(part_f32_)(const bc__att_tile *t, const bc__att_head *h, int seg, float *scratch, float *m,
                                       float *l, float *o) {
    ATT_FN(part_)(BC_DTYPE_F32, t, h, seg, scratch, m, l, o);
}
static ATT_ATTR void ATT_FN(part_f16_)(const bc__att_tile *t, const bc__att_head *h, int seg, float *scratch, float *m,
                                       float *l, float *o) {
    ATT_FN(part_)(BC_DTYPE_F16, t, h, seg, scratch, m, l, o);
}
static ATT_ATTR void ATT_FN(part_q8_0_)(const bc__att_tile *t, const bc__att_head *h, int seg, float *scratch, float *m,
                                        float *l, float *o) {
    ATT_FN(part_)(BC_DTYPE_Q8_0, t, h, seg, scratch, m, l, o);
}

void ATT_FN(bc__attend_part_)(const bc__att_tile *t, const bc__att_head *h, int seg, float *scratch, float *m, float *l,
                              float *o) {
    switch (h->k.dtype) {
    case BC_DTYPE_F16: ATT_FN(part_f16_)(t, h, seg, scratch, m, l, o); break;
    case BC_DTYPE_Q8_0: ATT_FN(part_q8_0_)(t, h, seg, scratch, m, l, o); break;
    default: ATT_FN(part_f32_)(t, h, seg, scratch, m, l, o); break;
    }
}

#undef ATT_CAT_
#undef ATT_CAT
#undef ATT_FN
#undef ATT_ATTR
#undef ATT_INLINE
#undef VF
#undef V_ZERO
#undef V_SET1
#undef V_LOADU
#undef V_STOREU
#undef V_BCAST
#undef V_FMA
#undef V_FNMA
#undef V_MUL
#undef V_ADD
#undef V_SUB
#undef V_MAX
#undef QK_RT
#undef PV_RT
