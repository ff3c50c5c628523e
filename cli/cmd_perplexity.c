/*
 * cmd_perplexity.c - baichuan perplexity: perplexity of a model on a text,
 * and the KL divergence of a model's predictions from a base model's, with
 * llama.cpp's llama-perplexity method so that the figures are comparable.
 *
 *   method     the whole file is tokenized once (a BOS first when the
 *              tokenizer adds one: tokenizer_config.json add_bos_token, or a
 *              GGUF's tokenizer.ggml.add_bos_token); the ids are cut into
 *              n_chunks = n_tokens / n_ctx chunks of n_ctx ids (the tail is
 *              dropped); each chunk runs from an empty cache, its first id
 *              replaced by BOS when the tokenizer adds one; positions
 *              first = n_ctx/2 .. n_ctx-2 are scored, each predicting the
 *              next id of the chunk: n_ctx - 1 - n_ctx/2 ids per chunk.
 *   statistics nll = -log_softmax(logits)[next id] in double; PPL =
 *              exp(mean nll) +/- PPL * sqrt(var(nll) / (count - 1)), as
 *              llama.cpp's "Final estimate" line.
 *   save mode  --kl-divergence-base FILE writes the base model's log-probs
 *              of every scored position (format below).
 *   compare    --kl-divergence --kl-divergence-base FILE runs the model under
 *              test over the file's ids and reports, per scored position,
 *              KL(base || test) = sum_v p_base(v) (log p_base(v) - log
 *              p_test(v)) over the whole vocabulary, the nll of both models,
 *              whether their arg-max ids agree, and p_test - p_base of the
 *              actual next id; the summary is llama.cpp's.
 *
 * The base file (little-endian):
 *   char[8] "BCKLDIV\0", u32 version (1), u32 n_ctx, u32 n_vocab,
 *   u32 n_chunks, u32 first (n_ctx/2), i32 bos_id (-1: no BOS replacement),
 *   i32 ids[n_chunks * n_ctx] (as tokenized, before the BOS replacement),
 *   then per chunk, per scored position: f32 log_prob[n_vocab].
 * Log-probs are stored as f32 (exact to ~1e-7 relative) rather than
 * llama.cpp's 16-bit codes: 4 * n_vocab bytes per scored token.
 */
#include "generate.h"

#include <errno.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

static const char help[] = "usage: baichuan perplexity -m MODEL -f TEXT [-c 512] [-b N] [--chunks N] [options]\n"
                           "       baichuan perplexity -m BASE -f TEXT --kl-divergence-base FILE [-c 512]\n"
                           "       baichuan perplexity -m TEST --kl-divergence-base FILE --kl-divergence [-f TEXT]\n"
                           "\n"
                           "Perplexity of the model on a text, as llama.cpp's llama-perplexity computes it:\n"
                           "chunks of n_ctx tokens, each from an empty cache (first token replaced by BOS when\n"
                           "the tokenizer adds a BOS), the second half of each chunk scored.\n"
                           "\n"
                           "options:\n"
                           "  -f, --file FILE          the text (UTF-8)\n"
                           "  -c, --ctx-size N         tokens per chunk (default 512)\n"
                           "  -b, --batch N            tokens per forward pass (default 512)\n"
                           "      --chunks N           score at most N chunks (default all)\n"
                           "      --kl-divergence-base FILE\n"
                           "                           without --kl-divergence: write the model's log-probs of\n"
                           "                           every scored token to FILE (the base for a comparison)\n"
                           "      --kl-divergence      compare the model with the base in FILE: KL divergence,\n"
                           "                           PPL of both, same top token; -f, when given, must\n"
                           "                           tokenize to the ids the file holds\n";

/* ------------------------------------------------------------------------ */
/* Options and input                                                        */
/* ------------------------------------------------------------------------ */

typedef struct ppl_opts {
    cli_model_opts model;
    const char *text_path;
    int n_ctx, n_batch, n_chunks; /* n_chunks -1: all */
    bool ctx_given;
    const char *base_path; /* --kl-divergence-base */
    bool compare;          /* --kl-divergence */
    cli_lora_opts lora;    /* --lora */
} ppl_opts;

#define KLD_MAGIC   "BCKLDIV"
#define KLD_VERSION 1u
#define KLD_HEADER  32 /* bytes before the ids */

/* Tokenizes the text file with the model's tokenizer (BOS first when the
 * tokenizer adds one). *bos_id: the BOS id when the tokenizer adds one,
 * else -1. 0, or 1 after printing an error. */
static int tokenize_file(const ppl_opts *o, int32_t **ids_out, int *n_out, int32_t *bos_id) {
    char err[1024];
    bc_tokenizer *tok = NULL;
    char *text = NULL;
    int32_t *ids = NULL;
    int rc = 1;
    size_t len, n = 0;
    if (bc_tokenizer_load(o->model.model, &tok, err, sizeof err) != BC_STATUS_OK) {
        cli_error("%s", err);
        goto done;
    }
    bc_tokenizer_info ti;
    bc_tokenizer_get_info(tok, &ti);
    if ((text = cli_read_file(o->text_path, &len)) == NULL) goto done;
    if (len == 0) {
        cli_error("%s: the file is empty: there is no text to score", o->text_path);
        goto done;
    }
    bc_status st = bc_tokenizer_encode(tok, text, len, BC_SWITCH_AUTO, BC_SWITCH_OFF, NULL, 0, &n);
    if (st == BC_STATUS_ERROR_MEMORY || n > INT32_MAX / 2) {
        cli_error("%s: out of memory tokenizing", o->text_path);
        goto done;
    }
    if ((ids = malloc((n ? n : 1) * sizeof *ids)) == NULL ||
        bc_tokenizer_encode(tok, text, len, BC_SWITCH_AUTO, BC_SWITCH_OFF, ids, n, &n) != BC_STATUS_OK) {
        cli_error("%s: out of memory tokenizing", o->text_path);
        goto done;
    }
    *bos_id = ti.add_bos ? ti.bos_id : -1;
    *ids_out = ids;
    *n_out = (int)n;
    ids = NULL;
    rc = 0;
done:
    free(ids);
    free(text);
    bc_tokenizer_free(tok);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* The base file                                                            */
/* ------------------------------------------------------------------------ */

typedef struct kld_header {
    uint32_t n_ctx, n_vocab, n_chunks, first;
    int32_t bos_id;
} kld_header;

static void put_u32(uint8_t *p, uint32_t v) {
    for (int i = 0; i < 4; i++) p[i] = (uint8_t)(v >> (8 * i));
}
static uint32_t get_u32(const uint8_t *p) {
    return (uint32_t)p[0] | (uint32_t)p[1] << 8 | (uint32_t)p[2] << 16 | (uint32_t)p[3] << 24;
}

/* Bytes of a base file with these dimensions; 0 if it would overflow. */
static uint64_t kld_file_size(const kld_header *h) {
    uint64_t scored = (uint64_t)(h->n_ctx - 1 - h->first) * h->n_chunks;
    return KLD_HEADER + 4ull * h->n_ctx * h->n_chunks + 4ull * scored * h->n_vocab;
}

static int kld_write_header(FILE *f, const char *path, const kld_header *h, const int32_t *ids) {
    uint8_t b[KLD_HEADER] = {0};
    memcpy(b, KLD_MAGIC, 8);
    put_u32(b + 8, KLD_VERSION);
    put_u32(b + 12, h->n_ctx);
    put_u32(b + 16, h->n_vocab);
    put_u32(b + 20, h->n_chunks);
    put_u32(b + 24, h->first);
    put_u32(b + 28, (uint32_t)h->bos_id);
    size_t n = (size_t)h->n_ctx * h->n_chunks;
    if (fwrite(b, 1, sizeof b, f) != sizeof b) return cli_error("%s: write failed: %s", path, strerror(errno));
    for (size_t i = 0; i < n; i++) {
        uint8_t v[4];
        put_u32(v, (uint32_t)ids[i]);
        if (fwrite(v, 1, 4, f) != 4) return cli_error("%s: write failed: %s", path, strerror(errno));
    }
    return 0;
}

/* Opens a base file and reads its header and ids; checks the magic, the
 * version, the dimensions against the file's size and the ids against
 * n_vocab. 0, or 1 after printing an error naming the file. */
static int kld_open(const char *path, int n_vocab_model, FILE **out, kld_header *h, int32_t **ids_out) {
    FILE *f = fopen(path, "rb");
    if (f == NULL) return cli_error("%s: cannot open: %s", path, strerror(errno));
    uint8_t b[KLD_HEADER];
    int32_t *ids = NULL;
    if (fread(b, 1, sizeof b, f) != sizeof b || memcmp(b, KLD_MAGIC, 8) != 0) {
        fclose(f);
        return cli_error("%s: not a base file of 'baichuan perplexity --kl-divergence-base' (no %s header)", path,
                         KLD_MAGIC);
    }
    if (get_u32(b + 8) != KLD_VERSION) {
        fclose(f);
        return cli_error("%s: version %u, this program reads version %u", path, get_u32(b + 8), KLD_VERSION);
    }
    h->n_ctx = get_u32(b + 12);
    h->n_vocab = get_u32(b + 16);
    h->n_chunks = get_u32(b + 20);
    h->first = get_u32(b + 24);
    h->bos_id = (int32_t)get_u32(b + 28);
    if (h->n_ctx < 4 || h->n_ctx > (1u << 20) || h->first != h->n_ctx / 2 || h->n_chunks == 0 ||
        h->n_chunks > (1u << 24) || h->n_vocab == 0 || h->n_vocab > (1u << 24) ||
        (h->bos_id != -1 && (h->bos_id < 0 || (uint32_t)h->bos_id >= h->n_vocab))) {
        fclose(f);
        return cli_error("%s: bad header (n_ctx %u, first %u, n_chunks %u, n_vocab %u, bos_id %d)", path, h->n_ctx,
                         h->first, h->n_chunks, h->n_vocab, (int)h->bos_id);
    }
    if ((int)h->n_vocab != n_vocab_model) {
        fclose(f);
        return cli_error("%s: vocabulary mismatch: the base model had %u ids, this model has %d", path, h->n_vocab,
                         n_vocab_model);
    }
    uint64_t want = kld_file_size(h);
    if (fseeko(f, 0, SEEK_END) != 0) {
        fclose(f);
        return cli_error("%s: cannot seek: %s", path, strerror(errno));
    }
    uint64_t have = (uint64_t)ftello(f);
    if (have != want) {
        fclose(f);
        return cli_error("%s: %llu bytes, but n_ctx %u, n_chunks %u, n_vocab %u make %llu (%s)", path,
                         (unsigned long long)have, h->n_ctx, h->n_chunks, h->n_vocab, (unsigned long long)want,
                         have < want ? "truncated" : "trailing bytes");
    }
    size_t n = (size_t)h->n_ctx * h->n_chunks;
    if (fseeko(f, KLD_HEADER, SEEK_SET) != 0 || (ids = malloc(n * sizeof *ids)) == NULL) {
        fclose(f);
        return cli_error("%s: out of memory", path);
    }
    for (size_t i = 0; i < n; i++) {
        uint8_t v[4];
        if (fread(v, 1, 4, f) != 4) {
            free(ids);
            fclose(f);
            return cli_error("%s: read error in the ids", path);
        }
        ids[i] = (int32_t)get_u32(v);
        if (ids[i] < 0 || (uint32_t)ids[i] >= h->n_vocab) {
            int bad = (int)ids[i];
            free(ids);
            fclose(f);
            return cli_error("%s: id %zu is %d, outside the vocabulary [0, %u)", path, i, bad, h->n_vocab);
        }
    }
    *out = f;
    *ids_out = ids;
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Statistics                                                               */
/* ------------------------------------------------------------------------ */

/* log(sum_v exp(x[v])) in double, and the first arg-max. */
static double log_sum_exp(const float *x, int n, int *argmax) {
    int im = 0;
    for (int i = 1; i < n; i++)
        if (x[i] > x[im]) im = i;
    double m = x[im], s = 0.0;
    for (int i = 0; i < n; i++) s += exp((double)x[i] - m);
    if (argmax != NULL) *argmax = im;
    return m + log(s);
}

/* Mean and its standard error, as llama.cpp's mean_and_uncertainty. */
typedef struct mean_unc {
    double mean, unc;
} mean_unc;

static mean_unc mean_and_unc(double sum, double sum2, double count) {
    mean_unc r = {0.0, 0.0};
    if (count < 1) return r;
    r.mean = sum / count;
    double var = sum2 / count - r.mean * r.mean;
    r.unc = var > 0 && count > 10 ? sqrt(var / (count - 1)) : 0.0;
    return r;
}

typedef struct kld_stats {
    double sum_nll, sum_nll2, sum_nll_base, sum_nll_base2, sum_nll_nll_base;
    double sum_kld, sum_kld2, sum_p_diff, sum_p_diff2, sum_p_diff4;
    double count, n_same_top;
    float *kld_values; /* (count) */
} kld_stats;

static int cmp_float(const void *a, const void *b) {
    float x = *(const float *)a, y = *(const float *)b;
    return (x > y) - (x < y);
}

/* llama.cpp's percentile: linear interpolation in the sorted values. */
static double percentile(const float *v, size_t n, double fraction) {
    if (fraction <= 0) return v[0];
    if (fraction >= 1) return v[n - 1];
    double p = fraction * (double)(n - 1);
    size_t ip = (size_t)p;
    p -= (double)ip;
    return (1 - p) * v[ip] + p * v[ip + 1 < n ? ip + 1 : n - 1];
}

static void kld_report(kld_stats *s) {
    double n = s->count;
    mean_unc lp = mean_and_unc(s->sum_nll, s->sum_nll2, n);
    mean_unc lpb = mean_and_unc(s->sum_nll_base, s->sum_nll_base2, n);
    double cov = n < 10 ? 0.0 : (s->sum_nll_nll_base / n - (s->sum_nll / n) * (s->sum_nll_base / n)) / (n - 1);
    double ppl = exp(lp.mean), ppl_base = exp(lpb.mean);
    double ratio = lp.mean - lpb.mean;
    double ratio_unc = sqrt(fmax(0.0, lp.unc * lp.unc + lpb.unc * lpb.unc - 2.0 * cov));
    mean_unc kl = mean_and_unc(s->sum_kld, s->sum_kld2, n);
    mean_unc mse = mean_and_unc(s->sum_p_diff2, s->sum_p_diff4, n);
    double rms = sqrt(mse.mean), rms_unc = rms > 0 ? 0.5 / rms * mse.unc : 0.0;
    double top = s->n_same_top / n, top_unc = n > 1 ? sqrt(top * (1 - top) / (n - 1)) : 0.0;
    size_t m = (size_t)n;
    qsort(s->kld_values, m, sizeof *s->kld_values, cmp_float);
    double median = m % 2 == 0 ? 0.5 * (s->kld_values[m / 2] + s->kld_values[m / 2 - 1]) : s->kld_values[m / 2];

    printf("\n====== Perplexity statistics ======\n");
    printf("Mean PPL(Q)                   : %12.6f +/- %10.6f\n", ppl, ppl * lp.unc);
    printf("Mean PPL(base)                : %12.6f +/- %10.6f\n", ppl_base, ppl_base * lpb.unc);
    if (lp.unc > 0 && lpb.unc > 0)
        printf("Cor(ln(PPL(Q)), ln(PPL(base))): %9.2f%%\n", 100.0 * cov / (lp.unc * lpb.unc));
    printf("Mean ln(PPL(Q)/PPL(base))     : %12.8f +/- %10.8f\n", ratio, ratio_unc);
    printf("Mean PPL(Q)/PPL(base)         : %12.8f +/- %10.8f\n", exp(ratio), exp(ratio) * ratio_unc);
    printf("\n====== KL divergence statistics ======\n");
    printf("Mean    KLD: %.8f +/- %.8f\n", kl.mean, kl.unc);
    printf("Maximum KLD: %.8f\n", (double)s->kld_values[m - 1]);
    printf("99.9%%   KLD: %.8f\n", percentile(s->kld_values, m, 0.999));
    printf("99.0%%   KLD: %.8f\n", percentile(s->kld_values, m, 0.990));
    printf("Median  KLD: %.8f\n", median);
    printf("10.0%%   KLD: %.8f\n", percentile(s->kld_values, m, 0.100));
    printf("Minimum KLD: %.8f\n", (double)s->kld_values[0]);
    printf("\n====== Token probability statistics ======\n");
    mean_unc pd = mean_and_unc(s->sum_p_diff, s->sum_p_diff2, n);
    printf("Mean    dp: %.4f +/- %.4f %%\n", 100.0 * pd.mean, 100.0 * pd.unc);
    printf("RMS     dp: %.4f +/- %.4f %%\n", 100.0 * rms, 100.0 * rms_unc);
    printf("Same top p: %.4f +/- %.4f %%\n", 100.0 * top, 100.0 * top_unc);
}

/* ------------------------------------------------------------------------ */
/* The command                                                              */
/* ------------------------------------------------------------------------ */

static int parse_opts(int argc, char **argv, ppl_opts *o) {
    memset(o, 0, sizeof *o);
    cli_model_opts_init(&o->model);
    o->n_ctx = 512;
    o->n_batch = 512;
    o->n_chunks = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            fputs(cli_model_opts_help, stdout);
            fputs(cli_lora_opts_help, stdout);
            return 2;
        }
        int r = cli_model_opt(argc, argv, &i, &o->model);
        if (r == 0) r = cli_lora_opt(argc, argv, &i, &o->lora);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (strcmp(a, "-f") == 0 || strcmp(a, "--file") == 0) {
            if ((o->text_path = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx-size") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 4, 1 << 20, a, &o->n_ctx) != 0) return 1;
            o->ctx_given = true;
        } else if (strcmp(a, "-b") == 0 || strcmp(a, "--batch") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 1, 1 << 20, a, &o->n_batch) != 0) return 1;
        } else if (strcmp(a, "--chunks") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 1, 1 << 24, a, &o->n_chunks) != 0) return 1;
        } else if (strcmp(a, "--kl-divergence-base") == 0) {
            if ((o->base_path = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--kl-divergence") == 0) {
            o->compare = true;
        } else {
            return cli_error("perplexity: unknown option '%s' (see 'baichuan perplexity --help')", a);
        }
    }
    if (o->model.model == NULL) return cli_error("perplexity: no model given (use -m MODEL)");
    if (o->compare && o->base_path == NULL)
        return cli_error("perplexity: --kl-divergence needs --kl-divergence-base FILE (written by a run without "
                         "--kl-divergence)");
    if (!o->compare && o->text_path == NULL) return cli_error("perplexity: -f TEXT is required");
    return 0;
}

int cmd_perplexity(int argc, char **argv) {
    ppl_opts o;
    int r = parse_opts(argc, argv, &o);
    if (r != 0) {
        cli_lora_opts_free(&o.lora);
        return r == 2 ? 0 : 1;
    }

    int rc = 1;
    int32_t *ids = NULL, *text_ids = NULL;
    int n_ids = 0;
    bc_model *model = NULL;
    bc_context *ctx = NULL;
    bc_batch_entry *batch = NULL;
    float *row = NULL;
    FILE *base = NULL;
    kld_stats ks;
    memset(&ks, 0, sizeof ks);
    kld_header h = {0, 0, 0, 0, -1};
    double t_start = cli_now();

    if ((model = cli_load_model(&o.model)) == NULL || cli_load_loras(model, &o.lora) != 0) goto done;
    bc_model_info info;
    bc_model_get_info(model, &info);
    int n_vocab = info.n_vocab;

    if (o.compare) {
        if (kld_open(o.base_path, n_vocab, &base, &h, &ids) != 0) goto done;
        if (o.ctx_given && (uint32_t)o.n_ctx != h.n_ctx) {
            cli_error("%s: written with -c %u, but -c %d was given", o.base_path, h.n_ctx, o.n_ctx);
            goto done;
        }
        o.n_ctx = (int)h.n_ctx;
        if (o.n_chunks > 0 && (uint32_t)o.n_chunks < h.n_chunks) h.n_chunks = (uint32_t)o.n_chunks;
        if (o.text_path != NULL) {
            int32_t bos;
            if (tokenize_file(&o, &text_ids, &n_ids, &bos) != 0) goto done;
            size_t n = (size_t)h.n_ctx * h.n_chunks;
            if ((size_t)n_ids < n) {
                cli_error("%s: tokenizes to %d ids, but %s holds %zu (different text or tokenizer)", o.text_path, n_ids,
                          o.base_path, n);
                goto done;
            }
            for (size_t i = 0; i < n; i++)
                if (text_ids[i] != ids[i]) {
                    cli_error("%s: token %zu is id %d in the base file but %d in %s (different text or tokenizer)",
                              o.base_path, i, (int)ids[i], (int)text_ids[i], o.text_path);
                    goto done;
                }
            if (bos != h.bos_id) {
                cli_error("%s: BOS id %d, but this tokenizer's is %d (different tokenizer)", o.base_path, (int)h.bos_id,
                          (int)bos);
                goto done;
            }
        }
    } else {
        if (tokenize_file(&o, &ids, &n_ids, &h.bos_id) != 0) goto done;
        if (n_ids < 2 * o.n_ctx) {
            cli_error("%s: tokenizes to %d tokens; -c %d needs at least 2*%d = %d (a longer text, or a smaller -c)",
                      o.text_path, n_ids, o.n_ctx, o.n_ctx, 2 * o.n_ctx);
            goto done;
        }
        for (int i = 0; i < n_ids; i++)
            if (ids[i] >= n_vocab) {
                cli_error("%s: token %d is id %d, outside the model's vocabulary of %d", o.text_path, i, (int)ids[i],
                          n_vocab);
                goto done;
            }
        h.n_ctx = (uint32_t)o.n_ctx;
        h.n_vocab = (uint32_t)n_vocab;
        h.first = h.n_ctx / 2;
        h.n_chunks = (uint32_t)(n_ids / o.n_ctx);
        if (o.n_chunks > 0 && (uint32_t)o.n_chunks < h.n_chunks) h.n_chunks = (uint32_t)o.n_chunks;
        if (o.base_path != NULL) {
            if ((base = fopen(o.base_path, "wb")) == NULL) {
                cli_error("%s: cannot open for writing: %s", o.base_path, strerror(errno));
                goto done;
            }
            if (kld_write_header(base, o.base_path, &h, ids) != 0) goto done;
        }
    }
    if (o.n_ctx > info.n_ctx_train)
        fprintf(stderr, "baichuan: warning: -c %d exceeds the model's training context of %d\n", o.n_ctx,
                info.n_ctx_train);

    const int n_ctx = o.n_ctx, first = n_ctx / 2, n_scored = n_ctx - 1 - first;
    const int n_chunks = (int)h.n_chunks;
    bc_context_params cp = bc_context_default_params();
    cp.n_ctx = n_ctx;
    cp.n_batch = o.n_batch < n_ctx ? o.n_batch : n_ctx;
    cp.n_threads = o.model.n_threads;
    cp.cache_type = o.model.cache_type;
    char err[1024];
    if (bc_context_init(model, cp, &ctx, err, sizeof err) != BC_STATUS_OK) {
        cli_error("%s", err);
        goto done;
    }
    if (cli_set_loras(ctx, 0, &o.lora) != 0) goto done;
    batch = malloc((size_t)cp.n_batch * sizeof *batch);
    row = malloc((size_t)n_vocab * sizeof *row);
    if (o.compare) ks.kld_values = malloc((size_t)n_chunks * (size_t)n_scored * sizeof *ks.kld_values);
    if (batch == NULL || row == NULL || (o.compare && ks.kld_values == NULL)) {
        cli_error("out of memory");
        goto done;
    }
    fprintf(stderr,
            "perplexity: %d chunks of %d tokens, scoring the last %d of each (%d tokens), BOS replacement %s, "
            "%d threads\n",
            n_chunks, n_ctx, n_scored, n_chunks * n_scored, h.bos_id >= 0 ? "on" : "off", bc_context_n_threads(ctx));
    if (o.compare) printf("chunk        PPL(Q)     ln(PPL(Q)/PPL(base))        KL divergence     same top\n");

    double nll = 0.0, nll2 = 0.0, t_eval = 0.0;
    int count = 0;
    for (int c = 0; c < n_chunks; c++) {
        const int32_t *chunk = ids + (size_t)c * n_ctx;
        double t0 = cli_now();
        bc_context_seq_truncate(ctx, 0, 0);
        for (int start = 0; start < n_ctx; start += cp.n_batch) {
            int n = n_ctx - start < cp.n_batch ? n_ctx - start : cp.n_batch;
            for (int i = 0; i < n; i++) {
                int pos = start + i;
                int32_t id = pos == 0 && h.bos_id >= 0 ? h.bos_id : chunk[pos];
                batch[i] = (bc_batch_entry){0, pos, id, pos >= first && pos < n_ctx - 1};
            }
            if (bc_context_decode(ctx, batch, n) != BC_STATUS_OK) {
                cli_error("%s", bc_context_error(ctx));
                goto done;
            }
            for (int i = 0; i < n; i++) {
                if (!batch[i].logits) continue;
                const float *logits = bc_context_logits(ctx, i);
                int32_t next = chunk[start + i + 1];
                int top;
                double lse = log_sum_exp(logits, n_vocab, &top);
                double v = lse - logits[next];
                nll += v;
                nll2 += v * v;
                if (base != NULL && !o.compare) {
                    for (int k = 0; k < n_vocab; k++) row[k] = (float)((double)logits[k] - lse);
                    if (fwrite(row, sizeof *row, (size_t)n_vocab, base) != (size_t)n_vocab) {
                        cli_error("%s: write failed: %s", o.base_path, strerror(errno));
                        goto done;
                    }
                } else if (o.compare) {
                    if (fread(row, sizeof *row, (size_t)n_vocab, base) != (size_t)n_vocab) {
                        cli_error("%s: read error in the log-probs of chunk %d", o.base_path, c + 1);
                        goto done;
                    }
                    double kld = 0.0;
                    int top_base = 0;
                    for (int k = 0; k < n_vocab; k++) {
                        double lpb = row[k];
                        if (row[k] > row[top_base]) top_base = k;
                        kld += exp(lpb) * (lpb - ((double)logits[k] - lse));
                    }
                    double vb = -(double)row[next];
                    ks.sum_nll += v;
                    ks.sum_nll2 += v * v;
                    ks.sum_nll_base += vb;
                    ks.sum_nll_base2 += vb * vb;
                    ks.sum_nll_nll_base += v * vb;
                    ks.sum_kld += kld;
                    ks.sum_kld2 += kld * kld;
                    double p_diff = exp(-v) - exp(-vb);
                    ks.sum_p_diff += p_diff;
                    ks.sum_p_diff2 += p_diff * p_diff;
                    ks.sum_p_diff4 += p_diff * p_diff * p_diff * p_diff;
                    ks.n_same_top += top == top_base;
                    ks.kld_values[(size_t)ks.count] = (float)kld;
                    ks.count += 1;
                }
                count++;
            }
        }
        t_eval += cli_now() - t0;
        if (o.compare) {
            mean_unc lp = mean_and_unc(ks.sum_nll, ks.sum_nll2, ks.count);
            mean_unc lpb = mean_and_unc(ks.sum_nll_base, ks.sum_nll_base2, ks.count);
            mean_unc kl = mean_and_unc(ks.sum_kld, ks.sum_kld2, ks.count);
            printf("%5d  %10.4f  %10.6f               %10.6f +/- %8.6f  %7.3f%%\n", c + 1, exp(lp.mean),
                   lp.mean - lpb.mean, kl.mean, kl.unc, 100.0 * ks.n_same_top / ks.count);
        } else {
            printf("[%d]%.4f,", c + 1, exp(nll / count));
        }
        fflush(stdout);
    }
    if (!o.compare) printf("\n");
    if (base != NULL && !o.compare && fflush(base) != 0) {
        cli_error("%s: write failed: %s", o.base_path, strerror(errno));
        goto done;
    }

    double mean = nll / count, var = nll2 / count - mean * mean, ppl = exp(mean);
    double err_ppl = var > 0 && count > 1 ? sqrt(var / (count - 1)) * ppl : 0.0;
    printf("Final estimate: PPL = %.4f +/- %.5f\n", ppl, err_ppl);
    printf("tokens scored: %d (%d chunks x %d), n_ctx %d\n", count, n_chunks, n_scored, n_ctx);
    printf("time: %.2f s evaluating (%.1f tokens/s over all %d positions), %.2f s in all\n", t_eval,
           (double)n_chunks * n_ctx / t_eval, n_chunks * n_ctx, cli_now() - t_start);
    if (o.compare) kld_report(&ks);
    if (base != NULL && !o.compare) fprintf(stderr, "perplexity: wrote the base log-probs to %s\n", o.base_path);
    rc = 0;
done:
    if (base != NULL && fclose(base) != 0 && rc == 0 && !o.compare) rc = cli_error("%s: write failed", o.base_path);
    free(ks.kld_values);
    free(row);
    free(batch);
    bc_context_free(ctx);
    cli_lora_opts_free(&o.lora);
    bc_model_free(model);
    free(ids);
    free(text_ids);
    return rc;
}
