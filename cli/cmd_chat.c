/*
 * cmd_chat.c - baichuan chat: multi-turn chat in the Baichuan chat format.
 *
 * Each turn builds the whole conversation's input (bc_chat_encode, with its
 * history budget) and runs only the part the KV cache does not already hold:
 * the previous input and reply are a prefix of the next turn's input.
 */
#include "generate.h"

#include "../server/tools.h"

#include <errno.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static const char help[] =
    "usage: baichuan chat [-m DIR] [options]\n"
    "\n"
    "Interactive chat. Type a message and press Enter; the reply streams back.\n"
    "Commands: /reset (forget the conversation), /system TEXT (set the system\n"
    "message and reset), /quit (or Ctrl-D). Ctrl-C stops the current reply.\n"
    "With stdin not a terminal, each input line is one message, so chats can be\n"
    "scripted. Statistics per turn go to stderr.\n"
    "\n"
    "options:\n"
    "  -s, --system TEXT        system message\n"
    "  -n, --n-predict N        most tokens per reply (default: generation_config.json max_new_tokens)\n"
    "      --tools FILE         a JSON array of tools (OpenAI's shape): they are listed in the system\n"
    "                           message, and a reply is text or calls (tool_choice auto, as the server\n"
    "                           does it: server/README.md). Calls print as {\"tool_calls\": [...]}; then\n"
    "                           each call's result is read (one line per call) and the model answers.\n"
    "      --tool-choice C      auto (default) or required: every reply calls (a result, then the next reply)\n";

static volatile sig_atomic_t interrupted;
static void on_sigint(int sig) {
    (void)sig;
    interrupted = 1;
}

typedef struct conversation {
    bc_chat_message *msgs;
    char **texts; /* owned contents */
    size_t n, cap;
} conversation;

static int conv_add(conversation *c, bc_chat_role role, const char *text, size_t len) {
    if (c->n == c->cap) {
        size_t cap = c->cap ? c->cap * 2 : 16;
        bc_chat_message *m = realloc(c->msgs, cap * sizeof *m);
        if (m == NULL) return -1;
        c->msgs = m;
        char **t = realloc(c->texts, cap * sizeof *t);
        if (t == NULL) return -1;
        c->texts = t;
        c->cap = cap;
    }
    char *copy = malloc(len + 1);
    if (copy == NULL) return -1;
    memcpy(copy, text, len);
    copy[len] = '\0';
    c->texts[c->n] = copy;
    c->msgs[c->n] = (bc_chat_message){role, copy, len};
    c->n++;
    return 0;
}

/* Drops all messages but a leading system message. */
static void conv_reset(conversation *c, bool keep_system) {
    size_t keep = keep_system && c->n > 0 && c->msgs[0].role == BC_CHAT_ROLE_SYSTEM ? 1 : 0;
    for (size_t i = keep; i < c->n; i++) free(c->texts[i]);
    c->n = keep;
}

static void conv_free(conversation *c) {
    conv_reset(c, false);
    free(c->msgs);
    free(c->texts);
}

/* The calls of a reply: for each, the tool's result is read from the user
 * (a line), and the results become the next turn's message. 1 when the
 * reply called, 0 when it was text, -1 at end of input or out of memory. */
static int read_results(conversation *c, int turn_no) {
    srv_tool_scan scan = {0};
    const bc_chat_message *reply = &c->msgs[c->n - 1];
    srv_tool_scan_feed(&scan, reply->content, reply->content_len);
    srv_tool_scan_end(&scan);
    while (scan.n_calls > 0 && !scan.calls[scan.n_calls - 1].args_done) { /* cut by the token limit */
        srv_buf_free(&scan.calls[scan.n_calls - 1].name);
        srv_buf_free(&scan.calls[scan.n_calls - 1].args);
        scan.n_calls--;
    }
    if (scan.mode != 2 || scan.n_calls == 0) {
        srv_tool_scan_free(&scan);
        return 0;
    }
    int rc = -1, k = 0;
    char **ids = calloc((size_t)scan.n_calls, sizeof *ids), **results = calloc((size_t)scan.n_calls, sizeof *results);
    const char **names = calloc((size_t)scan.n_calls, sizeof *names);
    size_t *lens = calloc((size_t)scan.n_calls, sizeof *lens);
    srv_buf msg = {0};
    if (ids == NULL || results == NULL || names == NULL || lens == NULL) goto done;
    for (; k < scan.n_calls; k++) {
        srv_buf id = {0};
        srv_buf_printf(&id, "call_%d_%d", turn_no, k);
        ids[k] = id.data;
        names[k] = scan.calls[k].name.data ? scan.calls[k].name.data : "";
        fprintf(stderr, "[result of %s (%s)]> ", names[k], ids[k] ? ids[k] : "");
        fflush(stderr);
        size_t cap = 0;
        ssize_t n = getline(&results[k], &cap, stdin);
        if (n < 0) goto done;
        while (n > 0 && (results[k][n - 1] == '\n' || results[k][n - 1] == '\r')) results[k][--n] = '\0';
        lens[k] = (size_t)n;
        if (ids[k] == NULL) goto done;
    }
    if (srv_tools_render_results((const char *const *)ids, names, (const char *const *)results, lens, (size_t)k,
                                 &msg) != 0 ||
        conv_add(c, BC_CHAT_ROLE_USER, msg.data, msg.len) != 0)
        goto done;
    rc = 1;
done:
    for (int i = 0; i < scan.n_calls; i++) {
        if (ids) free(ids[i]);
        if (results) free(results[i]);
    }
    free(ids);
    free(results);
    free(names);
    free(lens);
    srv_buf_free(&msg);
    srv_tool_scan_free(&scan);
    return rc;
}

/* One turn: the reply to the conversation so far, appended to it. */
static int turn(cli_gen *g, conversation *c, bc_chat_params cp, int n_predict, FILE *out) {
    size_t n_ids = 0;
    char err[512];
    bc_status st = bc_chat_encode(g->tok, c->msgs, c->n, cp, NULL, 0, &n_ids, err, sizeof err);
    if (st != BC_STATUS_OK && !(st == BC_STATUS_ERROR_ARGUMENT && n_ids > 0)) return cli_error("chat: %s", err);
    int32_t *ids = malloc(n_ids * sizeof *ids);
    if (ids == NULL) return cli_error("out of memory");
    if (bc_chat_encode(g->tok, c->msgs, c->n, cp, ids, n_ids, &n_ids, err, sizeof err) != BC_STATUS_OK) {
        free(ids);
        return cli_error("chat: %s", err);
    }
    int n_ctx = bc_context_n_ctx(g->ctx);
    int room = n_ctx - (int)n_ids;
    int n_max = n_predict < room ? n_predict : room;
    char *reply = NULL;
    cli_finish finish;
    interrupted = 0;
    int rc = cli_gen_run(g, ids, (int)n_ids, n_max, out, &reply, &interrupted, &finish);
    free(ids);
    if (rc != 0) return 1;
    fputc('\n', out);
    fflush(out);
    if (finish == CLI_FINISH_INTERRUPTED) fputs("[reply stopped]\n", stderr);
    fprintf(stderr, "[%d tokens reused from the cache, %d new prompt tokens, %d generated, %.1f tokens/s]\n",
            g->n_reused, g->n_prompt, g->n_generated, g->t_generate > 0 ? g->n_generated / g->t_generate : 0.0);
    rc = conv_add(c, BC_CHAT_ROLE_ASSISTANT, reply, strlen(reply)) == 0 ? 0 : cli_error("out of memory");
    free(reply);
    return rc;
}

/* Reads one line into *line (without the newline). Returns its length, -1 at
 * end of input, -2 when interrupted. */
static long read_line(char **line, size_t *cap) {
    errno = 0;
    ssize_t n = getline(line, cap, stdin);
    if (n < 0) {
        if (errno == EINTR) {
            clearerr(stdin);
            return -2;
        }
        return -1;
    }
    while (n > 0 && ((*line)[n - 1] == '\n' || (*line)[n - 1] == '\r')) (*line)[--n] = '\0';
    return (long)n;
}

int cmd_chat(int argc, char **argv) {
    cli_gen_opts o;
    cli_gen_opts_init(&o);
    const char *system = NULL, *tools_path = NULL, *tool_choice = "auto";
    int n_predict = -1;
    for (int i = 1; i < argc; i++) {
        const char *a = argv[i], *v;
        if (cli_is_help(a)) {
            fputs(help, stdout);
            fputs(cli_model_opts_help, stdout);
            fputs(cli_gen_opts_help, stdout);
            return 0;
        }
        int r = cli_gen_opt(argc, argv, &i, &o);
        if (r < 0) return 1;
        if (r > 0) continue;
        if (strcmp(a, "-s") == 0 || strcmp(a, "--system") == 0) {
            if ((system = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--tools") == 0) {
            if ((tools_path = cli_value(argc, argv, &i)) == NULL) return 1;
        } else if (strcmp(a, "--tool-choice") == 0) {
            if ((tool_choice = cli_value(argc, argv, &i)) == NULL) return 1;
            if (strcmp(tool_choice, "auto") != 0 && strcmp(tool_choice, "required") != 0)
                return cli_error("chat: --tool-choice takes auto or required, not '%s'", tool_choice);
        } else if (strcmp(a, "-n") == 0 || strcmp(a, "--n-predict") == 0) {
            if ((v = cli_value(argc, argv, &i)) == NULL || cli_parse_int(v, 1, 1 << 24, a, &n_predict) != 0) return 1;
        } else {
            return cli_error("chat: unknown option '%s' (see 'baichuan chat --help')", a);
        }
    }
    if (o.model.model == NULL) o.model.model = cli_default_model();

    cli_gen g;
    memset(&g, 0, sizeof g);
    conversation conv = {0};
    char *line = NULL, *tools_gbnf = NULL;
    size_t line_cap = 0;
    int rc = 1, turn_no = 0;
    srv_tools tools = {0};
    srv_buf system_text = {0};
    if (system != NULL) srv_buf_puts(&system_text, system);
    if (tools_path != NULL) {
        if (o.constraint_opt != NULL) {
            cli_error("--tools: %s constrains the output too; give one", o.constraint_opt);
            goto done;
        }
        json_error_t je;
        json_t *arr = json_load_file(tools_path, 0, &je);
        char err[512];
        if (arr == NULL) {
            cli_error("--tools %s: line %d column %d: %s", tools_path, je.line, je.column, je.text);
            goto done;
        }
        int st = srv_tools_from_array(arr, &tools, err, sizeof err);
        json_decref(arr);
        if (st == 0 && strcmp(tool_choice, "required") == 0) tools.choice = SRV_TOOL_CHOICE_REQUIRED;
        if (st != 0 || (tools_gbnf = srv_tools_gbnf(&tools, err, sizeof err)) == NULL) {
            cli_error("--tools %s: %s", tools_path, err);
            goto done;
        }
        if (srv_tools_describe(&tools, &system_text) != 0) goto done;
        o.constraint_opt = "--tools";
        o.constraint_gbnf = tools_gbnf;
        system = system_text.data;
    }
    if (cli_gen_init(&g, &o) != 0) goto done;
    bc_chat_params cp = bc_chat_default_params(g.tok);
    int n_ctx = bc_context_n_ctx(g.ctx);
    if (cp.max_length > n_ctx) cp.max_length = n_ctx;
    if (n_predict < 0) n_predict = cp.max_new_tokens;
    /* The history budget reserves room for the reply; with a short context,
     * keep at least half of it for the input. */
    if (cp.max_new_tokens > cp.max_length / 2) cp.max_new_tokens = cp.max_length / 2;
    if (n_predict > cp.max_length) n_predict = cp.max_length;
    if (system != NULL && conv_add(&conv, BC_CHAT_ROLE_SYSTEM, system, strlen(system)) != 0) goto done;

    struct sigaction sa;
    memset(&sa, 0, sizeof sa);
    sa.sa_handler = on_sigint; /* no SA_RESTART: Ctrl-C at the prompt interrupts the read */
    sigaction(SIGINT, &sa, NULL);

    bool tty = isatty(STDIN_FILENO);
    if (tty) fprintf(stderr, "chatting with %s: /reset, /system TEXT, /quit\n", o.model.model);
    for (;;) {
        if (tty) {
            fputs("> ", stdout);
            fflush(stdout);
        }
        long n = read_line(&line, &line_cap);
        if (n == -1) break;
        if (n == -2) {
            interrupted = 0;
            fputs("\n(use /quit or Ctrl-D to leave)\n", stderr);
            continue;
        }
        if (n == 0) continue;
        if (strcmp(line, "/quit") == 0 || strcmp(line, "/exit") == 0) break;
        if (strcmp(line, "/reset") == 0) {
            conv_reset(&conv, true);
            fputs("[conversation reset]\n", stderr);
            continue;
        }
        if (strncmp(line, "/system", 7) == 0 && (line[7] == ' ' || line[7] == '\0')) {
            const char *text = line[7] ? line + 8 : "";
            conv_reset(&conv, false);
            if (*text && conv_add(&conv, BC_CHAT_ROLE_SYSTEM, text, strlen(text)) != 0) goto done;
            fputs("[system message set; conversation reset]\n", stderr);
            continue;
        }
        if (line[0] == '/' && line[1] != '/') {
            fprintf(stderr,
                    "unknown command '%s' (commands: /reset, /system TEXT, /quit; start with // to send a "
                    "message beginning with /)\n",
                    line);
            continue;
        }
        const char *msg = line[0] == '/' ? line + 1 : line;
        if (conv_add(&conv, BC_CHAT_ROLE_USER, msg, strlen(msg)) != 0) goto done;
        if (turn(&g, &conv, cp, n_predict, stdout) != 0) goto done;
        /* With tools: while the model calls, the results go back to it. */
        for (int calls = 0; tools.tools != NULL && calls < 8; calls++) {
            int called = read_results(&conv, turn_no++);
            if (called < 0) goto done;
            if (called == 0) break;
            if (turn(&g, &conv, cp, n_predict, stdout) != 0) goto done;
        }
    }
    rc = 0;
done:
    srv_tools_free(&tools);
    free(tools_gbnf);
    srv_buf_free(&system_text);
    free(line);
    conv_free(&conv);
    cli_gen_free(&g);
    return rc;
}
