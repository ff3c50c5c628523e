/*
 * load.c - bc_tokenizer_load: picks the source of a vocabulary, reads it, and
 * hands it to the one builder (bc__tokenizer_build, tokenizer.c).
 *
 *   a GGUF file            its tokenizer.ggml.* metadata (tokenizer_gguf.c)
 *   a model directory      its tokenizer.model, then the directory's JSON
 *                          settings (tokenizer_config.json,
 *                          generation_config.json, config.json)
 *   a tokenizer.model      the file alone; the settings take their defaults
 * A tokenizer.model is parsed by formats/sp_model.c.
 */
#include "tokenizer/load.h"

#include "formats/gguf.h"
#include "formats/hf_config.h"
#include "tokenizer/tokenizer_gguf.h"

#include <stdlib.h>
#include <string.h>

static int read_whole_file(const char *path, uint8_t **data, size_t *size, bc__err *err) {
    bc__file *f;
    if (bc__file_map(path, &f, err) != 0) return -1;
    if (f->size > SIZE_MAX) {
        bc__file_unmap(f);
        return bc__errorf(err, BC_STATUS_ERROR_IO, "%s: too large", path);
    }
    *data = malloc((size_t)f->size);
    if (*data == NULL) {
        bc__file_unmap(f);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", path);
    }
    memcpy(*data, f->data, (size_t)f->size);
    *size = (size_t)f->size;
    bc__file_unmap(f);
    return 0;
}

/* The tokenizer.model source: tok->file_bytes parsed (formats/sp_model.c),
 * then built (checks, tables, the model's self test). The directory's JSON
 * is the caller's. */
static int from_sp_model(bc_tokenizer *tok, bc__err *err) {
    if (bc__sp_model_parse(&tok->sp, tok->file_bytes, tok->file_size, tok->path, err) != 0) return -1;
    return bc__tokenizer_build(tok, err);
}

/* Picks the source of path: a GGUF file, a model directory or a
 * tokenizer.model file. */
static int load(bc_tokenizer *tok, const char *path, bc__err *err) {
    const char *dir = NULL;
    /* A GGUF file (or a file named *.gguf, for the reader's message). */
    size_t plen = strlen(path);
    if (!bc__is_directory(path) &&
        (bc__gguf_is_file(path) || (plen >= 5 && strcmp(path + plen - 5, ".gguf") == 0 && bc__file_exists(path))))
        return bc__tokenizer_from_gguf(tok, path, err);
    if (bc__is_directory(path)) {
        dir = path;
        tok->path = bc__path_join(path, "tokenizer.model");
        tok->from_directory = true;
    } else {
        tok->path = bc__strdup(path);
    }
    if (tok->path == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "out of memory");
    if (dir != NULL && !bc__file_exists(tok->path))
        return bc__errorf(err, BC_STATUS_ERROR_IO, "%s: no tokenizer.model in this directory", dir);
    if (read_whole_file(tok->path, &tok->file_bytes, &tok->file_size, err) != 0 || from_sp_model(tok, err) != 0)
        return -1;
    if (dir != NULL && bc__tok_dir_config_read(dir, tok->n_vocab, &tok->config, &tok->gen, &tok->n_ctx_train, err) != 0)
        return -1;
    if ((tok->config.add_bos_token && tok->bos_id < 0) || (tok->config.add_eos_token && tok->eos_id < 0))
        return bc__errorf(err, BC_STATUS_ERROR_MODEL,
                          "%s/tokenizer_config.json: add_%s_token is true but %s has no %s control piece", dir,
                          tok->config.add_bos_token && tok->bos_id < 0 ? "bos" : "eos", tok->path,
                          tok->config.add_bos_token && tok->bos_id < 0 ? "BOS (<s>)" : "EOS (</s>)");
    return 0;
}

int bc__tokenizer_from_bytes(const uint8_t *data, size_t size, const char *name, bc_tokenizer **out, bc__err *err) {
    *out = NULL;
    bc_tokenizer *tok = calloc(1, sizeof *tok);
    if (tok == NULL) return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", name);
    tok->path = bc__strdup(name);
    tok->file_bytes = malloc(size ? size : 1);
    if (tok->path == NULL || tok->file_bytes == NULL) {
        bc_tokenizer_free(tok);
        return bc__errorf(err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", name);
    }
    if (size > 0) memcpy(tok->file_bytes, data, size);
    tok->file_size = size;
    if (from_sp_model(tok, err) != 0) {
        bc_tokenizer_free(tok);
        return -1;
    }
    *out = tok;
    return 0;
}

bc_status bc_tokenizer_load(const char *path, bc_tokenizer **out, char *err_buf, size_t err_size) {
    bc__err err = {BC_STATUS_OK, ""};
    if (out != NULL) *out = NULL;
    if (path == NULL || out == NULL) {
        bc__errorf(&err, BC_STATUS_ERROR_ARGUMENT, "bc_tokenizer_load: path and out must not be NULL");
        bc__err_copy(&err, err_buf, err_size);
        return err.status;
    }
    bc_tokenizer *tok = calloc(1, sizeof *tok);
    if (tok == NULL) {
        bc__errorf(&err, BC_STATUS_ERROR_MEMORY, "%s: out of memory", path);
    } else if (load(tok, path, &err) == 0) {
        *out = tok;
        return BC_STATUS_OK;
    }
    bc_tokenizer_free(tok);
    bc__err_copy(&err, err_buf, err_size);
    return err.status;
}
