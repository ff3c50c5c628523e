/*
 * generate.c - see generate.h.
 */
#include "generate.h"

#include <stdlib.h>
#include <string.h>
#include <time.h>

double cli_now(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec * 1e-9;
}

/* ------------------------------------------------------------------------ */
/* Options                                                                  */
/* ------------------------------------------------------------------------ */

const char *const cli_gen_opts_help =
    "  -c, --ctx-size N         context size in tokens (default: the model's, e.g. 4096)\n"
    "  -b, --batch N            prompt tokens per forward pass (default 512)\n"
    "      --temp T             temperature; 0 is greedy (default: generation_config.json, else 1.0)\n"
    "      --top-k K            keep the K most likely tokens; 0 = off (default: generation_config.json, else 50)\n"
    "      --top-p P            nucleus sampling; 1 = off (default: generation_config.json, else 1.0)\n"
    "      --min-p P            drop tokens below P x the most likely; 0 = off (default 0)\n"
    "      --repeat-penalty R   HF repetition penalty; 1 = off (default: generation_config.json, else 1.0)\n"
    "      --seed S             random seed (default 0x5eed): same seed, same text\n"
    "      --stop STR           stop before STR (repeatable, up to 16)\n"
    "      --json-schema FILE   constrain the output to JSON valid against the JSON Schema in FILE\n"
    "      --grammar-file FILE  constrain the output to the GBNF grammar in FILE (llama.cpp's notation)\n"
    "      --json               constrain the output to a JSON object\n"
    "                           (at most one of the three; the text ends where the grammar allows,\n"
    "                           or at -n, where it may be cut short)\n"
    "      --lora PATH[:SCALE]  apply a PEFT LoRA adapter (its directory: adapter_config.json and\n"
    "                           adapter_model.safetensors or .bin) unmerged, its update times SCALE\n"
    "                           (default 1); repeatable, the updates add up\n";

void cli_gen_opts_init(cli_gen_opts *o) {
    memset(o, 0, sizeof *o);
    cli_model_opts_init(&o->model);
    o->sampler = bc_sampler_default_params();
    o->n_batch = 512;
}

static int parse_float(const char *s, const char *opt, float *out) {
    char *end;
    double v = strtod(s, &end);
    if (end == s || *end != '\0') {
        cli_error("%s: '%s' is not a number", opt, s);
        return -1;
    }
    *out = (float)v;
    return 0;
}

int cli_gen_opt(int argc, char **argv, int *i, cli_gen_opts *o) {
    int r = cli_model_opt(argc, argv, i, &o->model);
    if (r == 0) r = cli_lora_opt(argc, argv, i, &o->lora);
    if (r != 0) return r;
    const char *a = argv[*i], *v = NULL;
    bc_sampler_params *p = &o->sampler;
#define VALUE()                                                                                                        \
    do {                                                                                                               \
        if ((v = cli_value(argc, argv, i)) == NULL) return -1;                                                         \
    } while (0)
    if (strcmp(a, "-c") == 0 || strcmp(a, "--ctx-size") == 0) {
        VALUE();
        return cli_parse_int(v, 1, 1 << 24, a, &o->n_ctx) == 0 ? 1 : -1;
    }
    if (strcmp(a, "-b") == 0 || strcmp(a, "--batch") == 0) {
        VALUE();
        return cli_parse_int(v, 1, 1 << 16, a, &o->n_batch) == 0 ? 1 : -1;
    }
    if (strcmp(a, "--temp") == 0 || strcmp(a, "--temperature") == 0) {
        VALUE();
        o->set_temp = true;
        return parse_float(v, a, &p->temperature) == 0 ? 1 : -1;
    }
    if (strcmp(a, "--top-k") == 0) {
        VALUE();
        o->set_top_k = true;
        return cli_parse_int(v, 0, 1 << 30, a, &p->top_k) == 0 ? 1 : -1;
    }
    if (strcmp(a, "--top-p") == 0) {
        VALUE();
        o->set_top_p = true;
        return parse_float(v, a, &p->top_p) == 0 ? 1 : -1;
    }
    if (strcmp(a, "--min-p") == 0) {
        VALUE();
        o->set_min_p = true;
        return parse_float(v, a, &p->min_p) == 0 ? 1 : -1;
    }
    if (strcmp(a, "--repeat-penalty") == 0) {
        VALUE();
        o->set_penalty = true;
        return parse_float(v, a, &p->repetition_penalty) == 0 ? 1 : -1;
    }
    if (strcmp(a, "--seed") == 0) {
        VALUE();
        char *end;
        unsigned long long s = strtoull(v, &end, 0);
        if (end == v || *end != '\0' || v[0] == '-') {
            cli_error("--seed: '%s' is not a non-negative integer", v);
            return -1;
        }
        o->set_seed = true;
        p->seed = (uint64_t)s;
        return 1;
    }
    if (strcmp(a, "--stop") == 0) {
        VALUE();
        if (o->n_stops == sizeof o->stops / sizeof o->stops[0]) {
            cli_error("--stop: at most %zu stop strings", sizeof o->stops / sizeof o->stops[0]);
            return -1;
        }
        o->stops[o->n_stops++] = v;
        return 1;
    }
    if (strcmp(a, "--json-schema") == 0 || strcmp(a, "--grammar-file") == 0 || strcmp(a, "--json") == 0) {
        if (o->constraint_opt != NULL) {
            cli_error("%s: %s was given already; at most one of --json-schema, --grammar-file and --json", a,
                      o->constraint_opt);
            return -1;
        }
        if (strcmp(a, "--json") != 0) VALUE();
        o->constraint_opt = a;
        o->constraint_file = strcmp(a, "--json") != 0 ? v : NULL;
        return 1;
    }
#undef VALUE
    return 0;
}

/* Compiles the constraint of o, if any, for g's tokenizer into g->grammar.
 * 0, or 1 after printing an error naming the file. */
static int init_constraint(cli_gen *g, const cli_gen_opts *o) {
    if (o->constraint_opt == NULL) return 0;
    char err[1024];
    bc_status st;
    if (o->constraint_gbnf != NULL) {
        st = bc_grammar_init_gbnf(g->tok, o->constraint_gbnf, strlen(o->constraint_gbnf), &g->grammar, err, sizeof err);
    } else if (o->constraint_file == NULL) {
        st = bc_grammar_init_json_schema(g->tok, NULL, 0, &g->grammar, err, sizeof err);
    } else {
        size_t len = 0;
        char *text = cli_read_file(o->constraint_file, &len);
        if (text == NULL) return 1;
        if (strcmp(o->constraint_opt, "--grammar-file") == 0)
            st = bc_grammar_init_gbnf(g->tok, text, len, &g->grammar, err, sizeof err);
        else
            st = bc_grammar_init_json_schema(g->tok, text, len, &g->grammar, err, sizeof err);
        free(text);
    }
    if (st != BC_STATUS_OK)
        return o->constraint_file ? cli_error("%s %s: %s", o->constraint_opt, o->constraint_file, err)
                                  : cli_error("%s: %s", o->constraint_opt, err);
    return 0;
}

/* ------------------------------------------------------------------------ */
/* Set-up                                                                   */
/* ------------------------------------------------------------------------ */

int cli_gen_init(cli_gen *g, cli_gen_opts *o) {
    memset(g, 0, sizeof *g);
    g->lora = &o->lora;
    char err[1024];
    if ((g->model = cli_load_model(&o->model)) == NULL) return 1;
    bc_model_get_info(g->model, &g->info);
    if (bc_tokenizer_load(o->model.model, &g->tok, err, sizeof err) != BC_STATUS_OK) return cli_error("%s", err);

    /* Sampling: generation_config.json, then the flags that were given. */
    bc_generator_params gp = bc_model_generator_params(g->model, g->tok);
    bc_sampler_params sp = gp.sampler;
    if (o->set_temp) sp.temperature = o->sampler.temperature;
    if (o->set_top_k) sp.top_k = o->sampler.top_k;
    if (o->set_top_p) sp.top_p = o->sampler.top_p;
    if (o->set_min_p) sp.min_p = o->sampler.min_p;
    if (o->set_penalty) sp.repetition_penalty = o->sampler.repetition_penalty;
    if (o->set_seed) sp.seed = o->sampler.seed;
    const char *bad = bc_sampler_params_check(sp);
    if (bad != NULL) return cli_error("sampling: %s", bad);
    if (init_constraint(g, o) != 0) return 1;
    gp.sampler = sp;
    gp.stops = o->stops;
    gp.n_stops = o->n_stops;
    gp.grammar = g->grammar;
    /* The sampling parameters were checked and the grammar is g's
     * tokenizer's: what is left to refuse is a stop string. */
    bc_status st = bc_generator_init(g->tok, gp, &g->gen, err, sizeof err);
    if (st == BC_STATUS_ERROR_MEMORY) return cli_error("out of memory");
    if (st != BC_STATUS_OK) return cli_error("--stop: %s", err);

    bc_context_params cp = bc_context_default_params();
    cp.n_ctx = o->n_ctx ? o->n_ctx : g->info.n_ctx_train;
    cp.n_batch = o->n_batch < cp.n_ctx ? o->n_batch : cp.n_ctx;
    cp.n_threads = o->model.n_threads;
    cp.cache_type = o->model.cache_type;
    if (bc_context_init(g->model, cp, &g->ctx, err, sizeof err) != BC_STATUS_OK) return cli_error("%s", err);
    if (cli_load_loras(g->model, g->lora) != 0 || cli_set_loras(g->ctx, 0, g->lora) != 0) return 1;
    g->cached = malloc((size_t)cp.n_ctx * sizeof *g->cached);
    g->batch = malloc((size_t)cp.n_batch * sizeof *g->batch);
    if (g->cached == NULL || g->batch == NULL) return cli_error("out of memory");
    return 0;
}

void cli_gen_free(cli_gen *g) {
    free(g->cached);
    free(g->batch);
    bc_generator_free(g->gen); /* before the grammar its matcher follows */
    bc_grammar_free(g->grammar);
    bc_context_free(g->ctx);
    if (g->lora) cli_lora_opts_free(g->lora); /* after the context, before the model */
    bc_tokenizer_free(g->tok);
    bc_model_free(g->model);
    memset(g, 0, sizeof *g);
}

/* ------------------------------------------------------------------------ */
/* Running                                                                  */
/* ------------------------------------------------------------------------ */

/* Decodes ids[0..n) at the end of sequence 0, logits for the last only. */
static int feed(cli_gen *g, const int32_t *ids, int n) {
    int n_batch = bc_context_n_batch(g->ctx);
    for (int start = 0; start < n; start += n_batch) {
        int m = n - start < n_batch ? n - start : n_batch;
        for (int i = 0; i < m; i++)
            g->batch[i] = (bc_batch_entry){0, g->n_cached + i, ids[start + i], start + i == n - 1};
        if (bc_context_decode(g->ctx, g->batch, m) != BC_STATUS_OK) return cli_error("%s", bc_context_error(g->ctx));
        memcpy(g->cached + g->n_cached, ids + start, (size_t)m * sizeof *ids);
        g->n_cached += m;
    }
    return 0;
}

/* Appends text to a growing malloc'd string. */
static int append(char **s, size_t *len, const char *text, size_t n) {
    char *p = realloc(*s, *len + n + 1);
    if (p == NULL) return -1;
    memcpy(p + *len, text, n);
    *len += n;
    p[*len] = '\0';
    *s = p;
    return 0;
}

static int emit(FILE *out, char **reply, size_t *reply_len, const char *text, size_t n) {
    if (n == 0) return 0;
    fwrite(text, 1, n, out);
    fflush(out);
    if (reply != NULL && append(reply, reply_len, text, n) != 0) return cli_error("out of memory");
    return 0;
}

/* The CLI's names of the generator's endings. */
static cli_finish cli_finish_of(bc_finish f) {
    switch (f) {
    case BC_FINISH_EOS: return CLI_FINISH_EOS;
    case BC_FINISH_STOP: return CLI_FINISH_STOP;
    case BC_FINISH_ENDED: return CLI_FINISH_INTERRUPTED;
    default: return CLI_FINISH_LENGTH;
    }
}

int cli_gen_run(cli_gen *g, const int32_t *input, int n_input, int n_max, FILE *out, char **reply,
                volatile sig_atomic_t *interrupted, cli_finish *finish) {
    int n_ctx = bc_context_n_ctx(g->ctx);
    size_t reply_len = 0;
    if (reply != NULL) *reply = NULL;
    g->n_generated = 0;
    if (n_input < 1) return cli_error("the input is empty: nothing to continue from");
    if (n_input > n_ctx)
        return cli_error("the input is %d tokens, longer than the context of %d (raise -c or shorten it)", n_input,
                         n_ctx);

    /* Keep the cached prefix the input shares (but always run the last
     * input id, whose logits start the reply). */
    int keep = 0;
    while (keep < g->n_cached && keep < n_input - 1 && g->cached[keep] == input[keep]) keep++;
    bc_context_seq_truncate(g->ctx, 0, keep);
    g->n_cached = keep;
    g->n_reused = keep;
    g->n_prompt = n_input - keep;

    double t0 = cli_now();
    if (feed(g, input + keep, n_input - keep) != 0) return 1;
    g->t_prompt = cli_now() - t0;

    /* The limit: n_max ids, or fewer when the context fills first. The last
     * id generated is never fed, so the text may go on until n_input + k - 1
     * ids fill the n_ctx positions: k = n_ctx - n_input + 1. */
    bc_generator_reset(g->gen);
    bc_generator_accept_prompt(g->gen, input, (size_t)n_input);
    int room = n_ctx - n_input + 1;
    bc_generator_set_max_tokens(g->gen, n_max < room ? n_max : room);

    t0 = cli_now();
    const float *logits = bc_context_logits(g->ctx, (n_input - keep - 1) % bc_context_n_batch(g->ctx));
    for (;;) {
        /* Ctrl-C is looked at before each draw, unless the limit is 0 (then
         * the text ends at the limit, before any draw). */
        if (interrupted != NULL && *interrupted && n_max > 0) {
            const char *tail;
            size_t tail_len;
            *finish = cli_finish_of(bc_generator_end(g->gen, &tail, &tail_len));
            if (emit(out, reply, &reply_len, tail, tail_len) != 0) return 1;
            break;
        }
        bc_generated next;
        if (bc_generator_step(g->gen, logits, &next) != BC_STATUS_OK)
            return cli_error("%s", bc_generator_error(g->gen));
        if (emit(out, reply, &reply_len, next.text, next.text_len) != 0 ||
            emit(out, reply, &reply_len, next.tail, next.tail_len) != 0)
            return 1;
        if (next.finish != BC_FINISH_NONE) {
            *finish = cli_finish_of(next.finish);
            break;
        }
        if (feed(g, &next.id, 1) != 0) return 1;
        logits = bc_context_logits(g->ctx, 0);
    }
    g->n_generated = bc_generator_n_generated(g->gen);
    g->t_generate = cli_now() - t0;
    if (reply != NULL && *reply == NULL && append(reply, &reply_len, "", 0) != 0) return cli_error("out of memory");
    return 0;
}
