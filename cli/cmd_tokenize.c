/*
 * cmd_tokenize.c - baichuan tokenize / detokenize / chat-template: text to
 * ids and back with the model's tokenizer.model, and the chat model input
 * for a conversation. No weights are loaded.
 */
#include "cli.h"

#include <errno.h>
#include <jansson.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char model_help[] =
    "  -m, --model MODEL        model directory (reads tokenizer.model, tokenizer_config.json,\n"
    "                           generation_config.json, config.json), a tokenizer.model file,\n"
    "                           or a GGUF file (its tokenizer.ggml.* vocabulary)\n";

static const char tokenize_help[] = "usage: baichuan tokenize -m MODEL [--lines] [--bos] [--eos]\n"
                                    "\n"
                                    "Reads UTF-8 text on stdin and prints its token ids separated by single\n"
                                    "spaces, on one line. The text is stdin exactly as given, a final newline\n"
                                    "included. BOS/EOS are added only with --bos/--eos or when the model's\n"
                                    "tokenizer_config.json sets add_bos_token/add_eos_token.\n"
                                    "\n"
                                    "options:\n"
                                    "      --lines              encode each input line (without its newline) on its\n"
                                    "                           own and print one output line for it\n"
                                    "      --bos                add the BOS id (<s>) before the ids\n"
                                    "      --eos                add the EOS id (</s>) after the ids\n";

static const char detokenize_help[] = "usage: baichuan detokenize -m MODEL [--lines]\n"
                                      "\n"
                                      "Reads token ids (decimal, separated by spaces or newlines) on stdin and\n"
                                      "writes the text they decode to, exactly (nothing is added), as the ids\n"
                                      "arrive: they form one sequence, decoded by the streaming detokenizer,\n"
                                      "which never writes part of a character.\n"
                                      "\n"
                                      "options:\n"
                                      "      --lines              decode each input line on its own and print the\n"
                                      "                           text followed by a newline\n";

static const char chat_help[] =
    "usage: baichuan chat-template -m MODEL [--max-new-tokens N]\n"
    "\n"
    "Reads a conversation on stdin, a JSON array of\n"
    "  {\"role\": \"system\"|\"user\"|\"assistant\", \"content\": \"...\"}\n"
    "(a system message only first), and prints the Chat model's input ids: the\n"
    "system text, then for each round user_token_id + user text and\n"
    "assistant_token_id + reply, and a final assistant_token_id when the last\n"
    "message is not the assistant's; the oldest rounds are dropped to leave room\n"
    "for N new tokens within model_max_length.\n"
    "\n"
    "options:\n"
    "      --max-new-tokens N   tokens to reserve for the reply (default: the\n"
    "                           model's generation_config.json max_new_tokens, else 2048)\n";

/* ------------------------------------------------------------------------ */
/* Shared helpers                                                           */
/* ------------------------------------------------------------------------ */

static bc_tokenizer *load_tokenizer(const char *model) {
    if (model == NULL) {
        cli_error("no model given (use -m MODEL: a model directory, a tokenizer.model file or a GGUF file)");
        return NULL;
    }
    char err[1024];
    bc_tokenizer *tok;
    if (bc_tokenizer_load(model, &tok, err, sizeof err) != BC_STATUS_OK) {
        cli_error("%s", err);
        return NULL;
    }
    return tok;
}

/* Reads all of stdin into *data (NUL-terminated); *len bytes. */
static int read_stdin(char **data, size_t *len) {
    size_t cap = 1 << 16, n = 0;
    char *buf = malloc(cap);
    if (buf == NULL) return cli_error("out of memory");
    for (;;) {
        if (cap - n < 4096) {
            char *g = cap > SIZE_MAX / 2 ? NULL : realloc(buf, cap * 2);
            if (g == NULL) {
                free(buf);
                return cli_error("out of memory reading stdin");
            }
            buf = g;
            cap *= 2;
        }
        size_t got = fread(buf + n, 1, cap - n - 1, stdin);
        n += got;
        if (got == 0) break;
    }
    if (ferror(stdin)) {
        free(buf);
        return cli_error("cannot read stdin: %s", strerror(errno));
    }
    buf[n] = '\0';
    *data = buf;
    *len = n;
    return 0;
}

/* An output buffer for ids, flushed to stdout when full. */
typedef struct out_buf {
    char data[1 << 16];
    size_t len;
} out_buf;

static int out_flush(out_buf *o) {
    if (o->len > 0 && fwrite(o->data, 1, o->len, stdout) != o->len) return cli_error("write to stdout failed");
    o->len = 0;
    return 0;
}

static int out_write(out_buf *o, const char *p, size_t n) {
    if (n > sizeof o->data - o->len) {
        if (out_flush(o) != 0) return 1;
        if (n > sizeof o->data) return fwrite(p, 1, n, stdout) == n ? 0 : cli_error("write to stdout failed");
    }
    memcpy(o->data + o->len, p, n);
    o->len += n;
    return 0;
}

/* Writes ids separated by single spaces, then a newline. */
static int out_ids(out_buf *o, const int32_t *ids, size_t n) {
    for (size_t i = 0; i < n; i++) {
        if (sizeof o->data - o->len < 16 && out_flush(o) != 0) return 1;
        char tmp[12];
        int k = 0;
        uint32_t v = (uint32_t)ids[i];
        do {
            tmp[k++] = (char)('0' + v % 10);
            v /= 10;
        } while (v != 0);
        if (i > 0) o->data[o->len++] = ' ';
        while (k > 0) o->data[o->len++] = tmp[--k];
    }
    return out_write(o, "\n", 1);
}

/* Growable id array for the encoder's "call again with more room". */
typedef struct id_vec {
    int32_t *ids;
    size_t cap;
} id_vec;

static int encode_into(const bc_tokenizer *tok, const char *text, size_t len, bc_switch bos, bc_switch eos, id_vec *v,
                       size_t *n) {
    for (;;) {
        bc_status st = bc_tokenizer_encode(tok, text, len, bos, eos, v->ids, v->cap, n);
        if (st == BC_STATUS_OK) return 0;
        if (st == BC_STATUS_ERROR_ARGUMENT && *n > v->cap) {
            size_t cap = *n + *n / 4 + 64;
            int32_t *g = realloc(v->ids, cap * sizeof *g);
            if (g == NULL) return cli_error("out of memory");
            v->ids = g;
            v->cap = cap;
            continue;
        }
        if (st == BC_STATUS_ERROR_ARGUMENT) return cli_error("the tokenizer has no BOS/EOS piece to add");
        return cli_error("tokenize: %s", bc_status_name(st));
    }
}

/* ------------------------------------------------------------------------ */
/* tokenize                                                                 */
/* ------------------------------------------------------------------------ */

int cmd_tokenize(int argc, char **argv) {
    const char *model = NULL;
    bool lines = false;
    bc_switch bos = BC_SWITCH_AUTO, eos = BC_SWITCH_AUTO;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(tokenize_help, stdout);
            fputs(model_help, stdout);
            return 0;
        }
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if ((model = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--lines") == 0) {
            lines = true;
        } else if (strcmp(a, "--bos") == 0) {
            bos = BC_SWITCH_ON;
        } else if (strcmp(a, "--eos") == 0) {
            eos = BC_SWITCH_ON;
        } else {
            return cli_error("tokenize: unknown option '%s' (see 'baichuan tokenize --help')", a);
        }
    }
    bc_tokenizer *tok = load_tokenizer(model);
    if (tok == NULL) return 1;
    int rc = 1;
    char *text = NULL;
    size_t len = 0, n = 0, cap = 0;
    id_vec v = {0};
    out_buf *o = malloc(sizeof *o);
    if (o == NULL) {
        cli_error("out of memory");
        goto done;
    }
    o->len = 0;
    if (!lines) {
        if (read_stdin(&text, &len) != 0 || encode_into(tok, text, len, bos, eos, &v, &n) != 0 ||
            out_ids(o, v.ids, n) != 0)
            goto done;
    } else {
        /* One line at a time: memory stays bounded by the longest line. */
        ssize_t got;
        errno = 0;
        while ((got = getline(&text, &cap, stdin)) >= 0) {
            size_t line_len = (size_t)got;
            if (line_len > 0 && text[line_len - 1] == '\n') line_len--;
            if (encode_into(tok, text, line_len, bos, eos, &v, &n) != 0 || out_ids(o, v.ids, n) != 0) goto done;
        }
        if (ferror(stdin)) {
            cli_error("cannot read stdin: %s", strerror(errno));
            goto done;
        }
    }
    if (out_flush(o) != 0) goto done;
    if (fflush(stdout) != 0) {
        cli_error("write to stdout failed: %s", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(o);
    free(v.ids);
    free(text);
    bc_tokenizer_free(tok);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* detokenize                                                               */
/* ------------------------------------------------------------------------ */

static int is_sep(char c) { return c == ' ' || c == '\t' || c == '\r' || c == '\n'; }

/* Parses the ids in s[0, len) (separated by spaces, tabs, CR or newlines)
 * into v. line is the line s starts on, for messages. */
static int parse_ids(const char *s, size_t len, int n_vocab, size_t line, id_vec *v, size_t *n) {
    *n = 0;
    size_t i = 0;
    for (;;) {
        while (i < len && is_sep(s[i])) {
            if (s[i] == '\n') line++;
            i++;
        }
        if (i >= len) return 0;
        size_t start = i;
        long long x = 0;
        bool ok = true;
        while (i < len && !is_sep(s[i])) {
            if (s[i] < '0' || s[i] > '9' || x > (long long)INT32_MAX)
                ok = false;
            else
                x = x * 10 + (s[i] - '0');
            i++;
        }
        if (!ok || x > INT32_MAX)
            return cli_error("detokenize: line %zu: '%.*s' is not a token id", line,
                             (int)(i - start < 40 ? i - start : 40), s + start);
        if (x >= n_vocab)
            return cli_error("detokenize: line %zu: id %lld is outside the vocabulary [0, %d)", line, x, n_vocab);
        if (*n == v->cap) {
            size_t cap = v->cap ? v->cap * 2 : 256;
            int32_t *g = realloc(v->ids, cap * sizeof *g);
            if (g == NULL) return cli_error("out of memory");
            v->ids = g;
            v->cap = cap;
        }
        v->ids[(*n)++] = (int32_t)x;
    }
}

/* The whole input as one sequence, decoded as it arrives: each block read
 * from stdin is parsed (an id cut by the block's end waits for the next),
 * fed to the streaming detokenizer, and its text written and flushed. A
 * bad id stops everything before its block is decoded. */
static int detokenize_stream(bc_tokenizer *tok, int n_vocab) {
    enum { BLOCK = 1 << 16, CARRY_MAX = 64 };
    char *buf = malloc(BLOCK + CARRY_MAX);
    id_vec v = {0};
    bc_detokenizer *detok = NULL;
    int rc = 1;
    size_t carry = 0, line = 1, n;
    if (buf == NULL || bc_detokenizer_init(tok, &detok) != BC_STATUS_OK) {
        cli_error("out of memory");
        goto done;
    }
    for (;;) {
        ssize_t got = read(0, buf + carry, BLOCK);
        if (got < 0 && errno == EINTR) continue;
        if (got < 0) {
            cli_error("cannot read stdin: %s", strerror(errno));
            goto done;
        }
        size_t len = carry + (size_t)got, end = len;
        if (got > 0)
            while (end > 0 && !is_sep(buf[end - 1])) end--; /* keep a cut id for the next block */
        if (parse_ids(buf, end, n_vocab, line, &v, &n) != 0) goto done;
        for (size_t i = 0; i < end; i++) line += buf[i] == '\n';
        const char *piece;
        size_t piece_len;
        for (size_t i = 0; i <= n; i++) {
            if (i == n && got > 0) break; /* the end of the input flushes */
            bc_status st = i < n ? bc_detokenizer_push(detok, v.ids[i], &piece, &piece_len)
                                 : bc_detokenizer_flush(detok, &piece, &piece_len);
            if (st != BC_STATUS_OK) {
                cli_error("detokenize: %s", bc_status_name(st));
                goto done;
            }
            if (piece_len > 0 && fwrite(piece, 1, piece_len, stdout) != piece_len) {
                cli_error("write to stdout failed");
                goto done;
            }
        }
        if (fflush(stdout) != 0) {
            cli_error("write to stdout failed: %s", strerror(errno));
            goto done;
        }
        if (got == 0) break;
        carry = len - end;
        if (carry >= CARRY_MAX) {
            cli_error("detokenize: line %zu: '%.20s...' is not a token id", line, buf + end);
            goto done;
        }
        memmove(buf, buf + end, carry);
    }
    rc = 0;
done:
    bc_detokenizer_free(detok);
    free(v.ids);
    free(buf);
    return rc;
}

int cmd_detokenize(int argc, char **argv) {
    const char *model = NULL;
    bool lines = false;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i];
        if (cli_is_help(a)) {
            fputs(detokenize_help, stdout);
            fputs(model_help, stdout);
            return 0;
        }
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if ((model = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--lines") == 0) {
            lines = true;
        } else {
            return cli_error("detokenize: unknown option '%s' (see 'baichuan detokenize --help')", a);
        }
    }
    bc_tokenizer *tok = load_tokenizer(model);
    if (tok == NULL) return 1;
    bc_tokenizer_info info;
    bc_tokenizer_get_info(tok, &info);
    if (!lines) {
        int r = detokenize_stream(tok, info.n_vocab);
        bc_tokenizer_free(tok);
        return r;
    }
    int rc = 1;
    char *input = NULL, *text = NULL;
    size_t cap = 0, n = 0, text_cap = 0, line = 0;
    id_vec v = {0};
    ssize_t got;
    errno = 0;
    while ((got = getline(&input, &cap, stdin)) >= 0) {
        size_t line_len = (size_t)got;
        if (line_len > 0 && input[line_len - 1] == '\n') line_len--;
        line++;
        if (parse_ids(input, line_len, info.n_vocab, line, &v, &n) != 0) goto done;
        size_t text_len;
        bc_status st = bc_tokenizer_decode(tok, v.ids, n, text, text_cap, &text_len);
        if (st == BC_STATUS_ERROR_ARGUMENT && text_len > text_cap) {
            free(text);
            text_cap = text_len + 1024;
            if ((text = malloc(text_cap)) == NULL) {
                text_cap = 0;
                cli_error("out of memory");
                goto done;
            }
            st = bc_tokenizer_decode(tok, v.ids, n, text, text_cap, &text_len);
        }
        if (st != BC_STATUS_OK) {
            cli_error("detokenize: line %zu: %s", line, bc_status_name(st));
            goto done;
        }
        if ((text_len > 0 && fwrite(text, 1, text_len, stdout) != text_len) || fputc('\n', stdout) == EOF) {
            cli_error("write to stdout failed");
            goto done;
        }
    }
    if (ferror(stdin)) {
        cli_error("cannot read stdin: %s", strerror(errno));
        goto done;
    }
    if (fflush(stdout) != 0) {
        cli_error("write to stdout failed: %s", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(v.ids);
    free(text);
    free(input);
    bc_tokenizer_free(tok);
    return rc;
}

/* ------------------------------------------------------------------------ */
/* chat-template                                                            */
/* ------------------------------------------------------------------------ */

int cmd_chat_template(int argc, char **argv) {
    const char *model = NULL;
    int max_new_tokens = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (cli_is_help(a)) {
            fputs(chat_help, stdout);
            fputs(model_help, stdout);
            return 0;
        }
        if (strcmp(a, "-m") == 0 || strcmp(a, "--model") == 0) {
            if ((model = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--max-new-tokens") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 0, 1 << 24, a, &max_new_tokens) != 0)
                return 1;
        } else {
            return cli_error("chat-template: unknown option '%s' (see 'baichuan chat-template --help')", a);
        }
    }
    bc_tokenizer *tok = load_tokenizer(model);
    if (tok == NULL) return 1;
    int rc = 1;
    char *input = NULL;
    size_t len = 0, n_messages = 0, n_ids = 0;
    json_t *root = NULL;
    bc_chat_message *messages = NULL;
    int32_t *ids = NULL;
    out_buf *o = NULL;
    if (read_stdin(&input, &len) != 0) goto done;
    json_error_t jerr;
    root = json_loadb(input, len, JSON_ALLOW_NUL, &jerr);
    if (root == NULL) {
        cli_error("chat-template: stdin: invalid JSON at line %d, column %d: %s", jerr.line, jerr.column, jerr.text);
        goto done;
    }
    if (cli_parse_conversation(root, &messages, &n_messages) != 0) goto done;
    bc_chat_params params = bc_chat_default_params(tok);
    if (max_new_tokens >= 0) params.max_new_tokens = max_new_tokens;
    char err[1024];
    bc_status st = bc_chat_encode(tok, messages, n_messages, params, NULL, 0, &n_ids, err, sizeof err);
    if (st == BC_STATUS_ERROR_ARGUMENT && n_ids > 0) {
        if ((ids = malloc(n_ids * sizeof *ids)) == NULL) {
            cli_error("out of memory");
            goto done;
        }
        st = bc_chat_encode(tok, messages, n_messages, params, ids, n_ids, &n_ids, err, sizeof err);
    }
    if (st != BC_STATUS_OK) {
        cli_error("%s", err);
        goto done;
    }
    if ((o = malloc(sizeof *o)) == NULL) {
        cli_error("out of memory");
        goto done;
    }
    o->len = 0;
    if (out_ids(o, ids, n_ids) != 0 || out_flush(o) != 0) goto done;
    if (fflush(stdout) != 0) {
        cli_error("write to stdout failed: %s", strerror(errno));
        goto done;
    }
    rc = 0;
done:
    free(o);
    free(ids);
    free(messages);
    json_decref(root);
    free(input);
    bc_tokenizer_free(tok);
    return rc;
}
