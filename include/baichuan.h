/*
 * baichuan.h - the one public header of the baichuan.c engine.
 *
 * The engine loads Baichuan checkpoints (official Hugging Face directories:
 * config.json plus safetensors or PyTorch .bin weights, sharded or not) and
 * computes the logits the model defines, for a batch of tokens drawn from
 * several sequences at once.
 *
 *   bc_model    weights and hyper-parameters; immutable once loaded, may be
 *               shared by any number of threads and contexts.
 *   bc_context  a paged KV cache shared by up to n_seq sequences, with a
 *               prefix cache over it, and scratch memory; used by one
 *               thread at a time; allocates everything at init.
 *   bc_tokenizer  SentencePiece BPE tokenizer (tokenizer.model), immutable;
 *               bc_detokenizer turns ids back into text as they come.
 *
 * Errors: every fallible call returns a bc_status. Loaders write a message
 * into a caller-supplied buffer; a context keeps its last message, readable
 * with bc_context_error() until the next call on that context. The library
 * never prints and never exits.
 *
 * Dimension legend used in comments: n_embd (hidden size), n_head, n_layer,
 * n_ff (MLP inner size), n_vocab, n_ctx (positions per sequence), n_tokens
 * (entries in one batch).
 */
#ifndef BAICHUAN_H
#define BAICHUAN_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#ifdef __cplusplus
extern "C" {
#endif

/* ------------------------------------------------------------------------ */
/* Status codes                                                             */
/* ------------------------------------------------------------------------ */

typedef enum bc_status {
    BC_STATUS_OK = 0,
    BC_STATUS_ERROR_IO = 1,           /* a file could not be opened, read or mapped */
    BC_STATUS_ERROR_FORMAT = 2,       /* a file's bytes are not what its format says */
    BC_STATUS_ERROR_MODEL = 3,        /* well-formed files that do not make a Baichuan model */
    BC_STATUS_ERROR_MEMORY = 4,       /* an allocation failed */
    BC_STATUS_ERROR_ARGUMENT = 5,     /* the caller passed something invalid */
    BC_STATUS_ERROR_CONTEXT_FULL = 6, /* a sequence would grow past n_ctx */
    BC_STATUS_ERROR_KV_FULL = 7,      /* the KV pool has no free block left (free a sequence, retry) */
} bc_status;

/* A static English name for a status ("ok", "i/o error", ...). */
const char *bc_status_name(bc_status status);

/* ------------------------------------------------------------------------ */
/* Model                                                                    */
/* ------------------------------------------------------------------------ */

typedef struct bc_model bc_model;

/* Element types of weight tensors. */
typedef enum bc_dtype {
    BC_DTYPE_F32 = 0,
    BC_DTYPE_F16 = 1,
    BC_DTYPE_BF16 = 2,
    /* Block-quantized formats, bit-compatible with llama.cpp's GGUF blocks. */
    BC_DTYPE_Q8_0 = 3,  /* 32 weights: f16 scale + 32 int8 (34 bytes) */
    BC_DTYPE_Q4_0 = 4,  /* 32 weights: f16 scale + 32 nibbles (18 bytes) */
    BC_DTYPE_Q4_1 = 5,  /* 32 weights: f16 scale, f16 min + 32 nibbles (20 bytes) */
    BC_DTYPE_Q5_0 = 6,  /* 32 weights: f16 scale + 5-bit values (22 bytes) */
    BC_DTYPE_Q5_1 = 7,  /* 32 weights: f16 scale, f16 min + 5-bit values (24 bytes) */
    BC_DTYPE_Q4_K = 8,  /* 256 weights in 8 sub-blocks, 6-bit scales and mins (144 bytes) */
    BC_DTYPE_Q5_K = 9,  /* 256 weights, 5-bit values (176 bytes) */
    BC_DTYPE_Q6_K = 10, /* 256 weights, 6-bit values, int8 sub-block scales (210 bytes) */
    /* Published 4-bit checkpoints, converted at load into blocks of ours
     * (never in GGUF files): bitsandbytes NF4 and FP4 (64 weights: the f32
     * absmax after double quantization + 32 bytes of 4-bit codes into the
     * format's 16-value table, 36 bytes) and GPTQ int4 (32 weights of one
     * group: f16 scale, zero point, 32 nibbles; w = scale * (q - zero), 20
     * bytes). */
    BC_DTYPE_NF4 = 11,
    BC_DTYPE_FP4 = 12,
    BC_DTYPE_Q4_GPTQ = 13,
    BC_DTYPE_COUNT
} bc_dtype;

/* "f32", "f16", "bf16", "q8_0", "q4_0", ..., "nf4", "fp4", "q4_gptq" */
const char *bc_dtype_name(bc_dtype dtype);

/* The instruction-set level the matrix kernels run at, the best this CPU
 * has (detected at run time): "avx512" (AVX-512 F, BW, VL and VNNI),
 * "avx2" (AVX2, FMA and F16C) or "c" (portable C). */
const char *bc_kernel_level(void);

/* How positions enter attention. */
typedef enum bc_pos_encoding {
    BC_POS_ENCODING_AUTO = 0, /* from the checkpoint (only valid in params) */
    BC_POS_ENCODING_ROPE = 1, /* rotary, rotate-half layout (the 7B models) */
    BC_POS_ENCODING_ALIBI = 2 /* linear biases (the 13B models) */
} bc_pos_encoding;

/* "auto", "rope", "alibi". */
const char *bc_pos_encoding_name(bc_pos_encoding pos_encoding);

/* A three-way switch for settings that are detected unless forced. */
typedef enum bc_switch { BC_SWITCH_AUTO = -1, BC_SWITCH_OFF = 0, BC_SWITCH_ON = 1 } bc_switch;

/* Checkpoint container formats. */
typedef enum bc_file_format {
    BC_FILE_FORMAT_SAFETENSORS = 0, /* model.safetensors or its shards */
    BC_FILE_FORMAT_TORCH = 1,       /* pytorch_model.bin (zip + pickle) or its shards */
    BC_FILE_FORMAT_GGUF = 2,        /* one llama.cpp GGUF file (v2 or v3) */
} bc_file_format;

/* "safetensors", "pytorch", "gguf". */
const char *bc_file_format_name(bc_file_format format);

/* What a written GGUF (bc_model_quantize) or a model quantized at load
 * (bc_model_params.quantize) stores, named as llama.cpp's llama-quantize names them.
 * The _m mixes and the output/attn_v/ffn_down choices follow llama.cpp's
 * llama_tensor_get_type; norm vectors stay f32. */
typedef enum bc_ftype {
    BC_FTYPE_F32 = 0,
    BC_FTYPE_F16,
    BC_FTYPE_BF16,
    BC_FTYPE_Q8_0,
    BC_FTYPE_Q4_0,
    BC_FTYPE_Q4_1,
    BC_FTYPE_Q5_0,
    BC_FTYPE_Q5_1,
    BC_FTYPE_Q4_K_M,
    BC_FTYPE_Q5_K_M,
    BC_FTYPE_Q6_K,
    BC_FTYPE_COUNT
} bc_ftype;

/* "f32", "f16", "bf16", "q8_0", ..., "q4_k_m", "q5_k_m", "q6_k". */
const char *bc_ftype_name(bc_ftype ftype);
/* Parses a name as bc_ftype_name writes it (case-insensitive); false if unknown. */
bool bc_ftype_from_name(const char *name, bc_ftype *out);

typedef struct bc_model_params {
    /* Position encoding; AUTO (default) detects it from config.json, where an
     * explicit "position_encoding" key wins over the architecture rules. */
    bc_pos_encoding pos_encoding;
    /* NormHead (lm_head rows divided by their L2 norm); AUTO (default) detects
     * it from config.json ("norm_head" key, else vocab_size == 125696). */
    bc_switch norm_head;
    /* Repacked weight copies for the fastest kernels: AUTO (default) and ON
     * give the block-quantized matrices (q4_0 .. q6_K) an interleaved copy
     * when the CPU's kernels have a layout for them (AVX2, AVX-512), made at
     * load by one thread per CPU; the mapped file pages of those matrices are
     * then released, so the copy takes their place in memory. OFF reads every
     * weight in place from the mapped file. */
    bc_switch repack;
    /* Quantize at load: BC_FTYPE_COUNT (default) keeps the weights as stored;
     * another ftype converts the matrices of an f32/f16/bf16 checkpoint at
     * load, in memory, to exactly the types and bytes bc_model_quantize would
     * write for it (W_pack split into Q/K/V in llama.cpp's row order, the
     * NormHead head normalized), so that the model computes what the GGUF
     * written with that ftype computes, without writing one. The converted
     * matrices are heap copies (a repacked copy comes on top of them); the
     * mapped pages of the originals are released. A checkpoint with
     * block-quantized matrices is refused (BC_STATUS_ERROR_ARGUMENT). */
    bc_ftype quantize;
    /* The lm_head's type: BC_DTYPE_COUNT (default) keeps it as stored (or as
     * `quantize` makes it); q8_0, q6_K, q5_K, q4_K, q5_1, q5_0, q4_1, q4_0,
     * f16, bf16 or f32 converts it at load, in memory, from the stored rows
     * (the NormHead head normalized first, as the GGUF writer does). For the
     * published 4-bit checkpoints, whose f16 head is 40% of what a 7B decode
     * step reads: q8_0 halves it. Other types are refused
     * (BC_STATUS_ERROR_ARGUMENT). */
    bc_dtype head_type;
} bc_model_params;

bc_model_params bc_model_default_params(void);

/* Loads the model at `path`: a Hugging Face directory, or a GGUF file
 * (llama.cpp's or ours; arch "baichuan", split Q/K/V in llama.cpp's RoPE row
 * order, which the engine undoes). The tokenizer is loaded on its own, with
 * bc_tokenizer_load() (which also reads a GGUF's vocabulary).
 * Weights stay in their file's dtype, mapped read-only from the files (unless
 * params.quantize converts them).
 * On success *out owns the model; free it with bc_model_free().
 * On failure *out is NULL and err (err_size bytes, may be 0) holds a message
 * naming the file, tensor or field at fault. */
bc_status bc_model_load(const char *path, bc_model_params params, bc_model **out, char *err, size_t err_size);

void bc_model_free(bc_model *model);

/* What a model is; filled by bc_model_get_info(). Strings are valid while the
 * model lives. */
typedef struct bc_model_info {
    const char *path;         /* as given to bc_model_load */
    const char *architecture; /* config.json architectures[0] */
    const char *variant;      /* "Baichuan-7B", "Baichuan2-13B", ... (a guess from
                               * the shape, for display only) */
    bc_pos_encoding pos_encoding;
    bool pos_encoding_explicit; /* set by a config key or a param, not detected */
    bool norm_head;
    bool norm_head_explicit;
    bc_file_format file_format;
    int n_files; /* weight files (shards) */
    int n_vocab;
    int n_embd;
    int n_ff;
    int n_layer;
    int n_head;
    int head_dim;
    int n_ctx_train; /* model_max_length, else max_position_embeddings */
    float norm_eps;
    float rope_theta;
    int bos_token_id, eos_token_id, pad_token_id;
    int64_t n_params;                 /* elements in the weights the model uses */
    uint64_t weight_bytes;            /* bytes of those weights as stored */
    uint64_t repacked_bytes;          /* bytes of repacked copies held in memory (see repack) */
    uint64_t released_bytes;          /* bytes of stored weights those copies (and the quantized
                                       * ones) replace (pages released) */
    bc_ftype quantized_at_load;       /* params.quantize, BC_FTYPE_COUNT when not quantized at load */
    uint64_t quantized_bytes;         /* bytes of heap copies converted at load still held (a matrix
                                       * that got a repacked copy frees its row-major one) */
    int n_quantized;                  /* matrices converted at load */
    const char *quantization;         /* a published 4-bit checkpoint's layout in words ("bitsandbytes
                                       * nf4, ..."), "" for other checkpoints */
    uint64_t converted_bytes;         /* bytes of the blocks such a checkpoint was converted to at load */
    int n_converted;                  /* matrices converted from its layout */
    int dtype_counts[BC_DTYPE_COUNT]; /* used tensors per dtype */
    int n_ignored_tensors;            /* tensors in the files the model does not use */
} bc_model_info;

void bc_model_get_info(const bc_model *model, bc_model_info *info);

/* ------------------------------------------------------------------------ */
/* Writing GGUF: baichuan quantize                                          */
/* ------------------------------------------------------------------------ */

/* Called after each tensor: bytes written so far of total, and the tensor's name. */
typedef void (*bc_progress_fn)(void *user, uint64_t done, uint64_t total, const char *tensor);

typedef struct bc_quantize_params {
    bc_ftype ftype;          /* default BC_FTYPE_F16 */
    bc_model_params model;   /* how IN is loaded (variant overrides); default bc_model_default_params() */
    bc_progress_fn progress; /* may be NULL (default) */
    void *progress_user;     /* passed to progress and loaded */
    /* Called once the input is loaded, before anything is written (NULL by
     * default): e.g. to say that a 4-bit checkpoint's weights (info->
     * quantization) are dequantized and then quantized to ftype. */
    void (*loaded)(void *user, const bc_model_info *info);
    /* LoRA adapters merged into the weights before they are written
     * (baichuan merge): n_loras adapter paths as bc_lora_load takes them, each
     * with its user scale (lora_scales NULL: all 1). Every adapted row is
     * W + scale * B A, computed in double and rounded to f32 once per adapter,
     * then converted to the tensor's type. Default none. */
    const char *const *lora_paths;
    const float *lora_scales;
    int n_loras;
} bc_quantize_params;

bc_quantize_params bc_quantize_default_params(void);

/* Writes the model at in_path (a Hugging Face directory or a GGUF file) to
 * out_path as a llama.cpp-compatible GGUF v3: arch "baichuan", llama.cpp's
 * tensor names, W_pack split into attn_q/attn_k/attn_v with Q and K rows in
 * llama.cpp's RoPE order, the lm_head normalized when NormHead is on, the
 * variant written explicitly (baichuan.position_encoding, baichuan.norm_head),
 * and the vocabulary (tokenizer.ggml.*) from in_path/tokenizer.model or the
 * input GGUF. Streams tensor by tensor: memory stays bounded by a few rows.
 * The file appears at out_path only when complete. BC_STATUS_ERROR_ARGUMENT
 * for a type this build cannot write. A published 4-bit checkpoint
 * (bitsandbytes NF4/FP4, GPTQ) is dequantized exactly, then quantized to
 * ftype: its 4-bit codes do not carry over (GGUF has no such blocks). */
bc_status bc_model_quantize(const char *in_path, const char *out_path, bc_quantize_params params, char *err,
                            size_t err_size);

/* Writes the model at in_path (a Hugging Face directory), with
 * params.lora_paths merged, to the directory out_dir as a Hugging Face
 * checkpoint: config.json (in_path's, without quantization_config, with
 * torch_dtype and the variant keys position_encoding and norm_head written
 * explicitly), tokenizer.model and the tokenizer and generation configs
 * copied, and one model.safetensors in the official tensor names (W_pack
 * fused, lm_head as stored) in params.ftype: BC_FTYPE_F32, F16 or BF16
 * (else BC_STATUS_ERROR_ARGUMENT). out_dir appears only when complete (it
 * is written as out_dir.tmp, then renamed). baichuan merge. */
bc_status bc_model_write_hf(const char *in_path, const char *out_dir, bc_quantize_params params, char *err,
                            size_t err_size);

/* ------------------------------------------------------------------------ */
/* Context and the forward pass                                             */
/* ------------------------------------------------------------------------ */

typedef struct bc_context bc_context;

/* Positions per block of the paged KV pool. */
#define BC_KV_BLOCK 16

typedef struct bc_context_params {
    int n_ctx; /* most positions one sequence holds; 0 (default) = the model's training context */
    int n_seq; /* sequences (each a block table into the shared pool); default 1 */
    /* Positions the KV pool holds for all sequences together, rounded up to
     * whole blocks of BC_KV_BLOCK; 0 (default) = n_seq times n_ctx rounded
     * up to whole blocks (every sequence can reach n_ctx at once). Less lets more sequences share
     * less memory: a decode that needs a block when none is free fails with
     * BC_STATUS_ERROR_KV_FULL. */
    int n_kv;
    /* Element type of the cached keys and values: BC_DTYPE_F16 (default;
     * on the small random test models, logits within 1e-3 relative of an
     * f32 cache at 40 positions and 2e-3 at 211), BC_DTYPE_Q8_0
     * (half the memory of f16; head_dim must be a multiple of 32) or
     * BC_DTYPE_F32 (exact). */
    bc_dtype cache_type;
    /* Keep full blocks after their sequences drop them, indexed by the token
     * ids from the sequence start, for bc_context_seq_reuse(); evicted least
     * recently used first when a block is needed. Default true. */
    bool prefix_cache;
    int n_batch;   /* most entries in one bc_context_decode call; default 512 */
    int n_threads; /* worker threads; 0 (default) = number of online CPUs */
    /* bf16 weights: round the activations to bf16 too and multiply with the
     * CPU's bf16 dot-product instructions (AVX512_BF16), as llama.cpp does:
     * about twice the prompt speed, logits about 1e-3 (relative) further from
     * the exact f32 computation. Default false: exact f32 activations. No
     * effect on other dtypes or CPUs without AVX512_BF16. */
    bool bf16_activations;
    /* Time each kind of step of the forward pass (bc_context_profile()).
     * Default false: no clock is read. On, each step reads the clock twice:
     * about 24 reads per layer per decode call, some 50 microseconds for a
     * 32-layer model (well under 1 % of its decode). */
    bool profile;
} bc_context_params;

/* "f32", "f16", "q8_0" parsed into *out; false for anything else. */
bool bc_cache_type_from_name(const char *name, bc_dtype *out);
/* A bc_dtype from its bc_dtype_name ("q8_0", "q6_k", ...; case-insensitive);
 * false for an unknown name. */
bool bc_dtype_from_name(const char *name, bc_dtype *out);

bc_context_params bc_context_default_params(void);

/* Bytes a context made with these params allocates: the KV pool, its block
 * tables and prefix index, and the scratch (UINT64_MAX if too large to
 * address). A context's memory is exactly bounded by this figure; it is
 * fixed at init and never grows. */
uint64_t bc_model_context_bytes(const bc_model *model, bc_context_params params);

/* Bytes of KV cache one position takes (K and V of every layer) in a cache
 * of type cache_type (f32, f16 or q8_0); 0 for another type. */
uint64_t bc_model_kv_bytes_per_position(const bc_model *model, bc_dtype cache_type);

/* Creates a context for `model`, which must outlive it. On failure *out is
 * NULL and err holds the reason. */
bc_status bc_context_init(const bc_model *model, bc_context_params params, bc_context **out, char *err,
                          size_t err_size);

void bc_context_free(bc_context *ctx);

/* The message of the last failed call on ctx ("" if none). Valid until the
 * next call on ctx. */
const char *bc_context_error(const bc_context *ctx);

/* One token to feed: it belongs to sequence `seq` (0 <= seq < n_seq) and sits
 * at position `pos` in it. Within a sequence, positions must continue the
 * cache: the first entry of sequence s has pos == bc_context_seq_len(ctx, s),
 * and each later entry of s in the same batch the next position. Entries of
 * different sequences may be interleaved in any order. */
typedef struct bc_batch_entry {
    int32_t seq;
    int32_t pos;
    int32_t token;
    bool logits; /* compute logits for this entry */
} bc_batch_entry;

/* Runs the model over n entries (1 <= n <= n_batch), appending their keys and
 * values to the sequences' caches (taking pool blocks as positions cross
 * into new ones, and copying a block shared with another sequence or the
 * prefix cache before writing into it). On success the logits of every
 * entry with `logits` set are readable with bc_context_logits() until the
 * next decode. On failure (bad token, position, sequence;
 * BC_STATUS_ERROR_CONTEXT_FULL when a sequence would pass n_ctx;
 * BC_STATUS_ERROR_KV_FULL when the pool lacks the blocks) no cache is
 * changed. */
bc_status bc_context_decode(bc_context *ctx, const bc_batch_entry *entries, int n);

/* The n_vocab logits of entry i of the last decode, or NULL if that entry
 * did not ask for logits. */
const float *bc_context_logits(const bc_context *ctx, int i);

/* Number of positions cached for sequence seq. */
int bc_context_seq_len(const bc_context *ctx, int seq);

/* Drops the cached positions [pos, end) of sequence seq (pos 0: all). Blocks
 * wholly past pos go back to the pool (full ones into the prefix cache); the
 * block holding pos stays with the sequence. */
bc_status bc_context_seq_truncate(bc_context *ctx, int seq, int pos);

/* Prefix caching: for an empty sequence seq, finds the longest run of whole
 * blocks in the cache whose token ids equal tokens[0 .. k*BC_KV_BLOCK) (the
 * same ids from the sequence start: keys and values depend on every earlier
 * token) and gives them to seq, which then holds min(k * BC_KV_BLOCK,
 * max_reuse) positions; returns that number (0 when nothing matched, the
 * sequence was not empty, or the prefix cache is off). The blocks are
 * shared, not copied: writing into a shared block later copies it first.
 * Pass max_reuse = n_tokens - 1 to keep the last token to feed for its
 * logits. */
int bc_context_seq_reuse(bc_context *ctx, int seq, const int32_t *tokens, int n_tokens, int max_reuse);

/* Forks sequence src into the empty sequence dst: dst then holds the same
 * positions as src, sharing src's blocks (nothing is copied and no block is
 * taken now; blocks src reserved past its positions stay src's). Both may
 * go on decoding on their own: the first write of either into a shared
 * block (the partial last one) copies it first, so neither sees the other's
 * later positions. Used to compute a prompt once
 * for several continuations. BC_STATUS_ERROR_ARGUMENT (nothing changes)
 * when src or dst is out of range, src == dst, or dst holds positions. */
bc_status bc_context_seq_fork(bc_context *ctx, int src, int dst);

/* Makes positions [len, len + n_positions) of sequence seq writable ahead of
 * decoding them (len = bc_context_seq_len): takes the blocks they need from
 * the pool, and copies a shared block they start in. Decoding them later
 * then needs no block. BC_STATUS_ERROR_KV_FULL (nothing taken) when the pool
 * has too few; BC_STATUS_ERROR_CONTEXT_FULL past n_ctx. */
bc_status bc_context_seq_reserve(bc_context *ctx, int seq, int n_positions);

/* Blocks that appending n_positions to sequence seq would take from the pool
 * (0 for those already reserved). */
int bc_context_seq_blocks_needed(const bc_context *ctx, int seq, int n_positions);

/* The KV pool's state. */
typedef struct bc_kv_stats {
    int n_blocks;        /* blocks in the pool */
    int block_size;      /* positions per block (BC_KV_BLOCK) */
    int n_free;          /* blocks a decode can take now: unused, or cached and unused (evicted on demand) */
    int n_cached;        /* blocks held by the prefix cache that no sequence uses (part of n_free) */
    int n_shared;        /* blocks used by more than one sequence */
    uint64_t bytes;      /* bytes of the pool (K and V) */
    int64_t n_evicted;   /* cached blocks evicted since init */
    bc_dtype cache_type; /* element type of the cache */
    bool prefix_cache;   /* full blocks are kept and reused (bc_context_params.prefix_cache) */
} bc_kv_stats;

void bc_context_kv_stats(const bc_context *ctx, bc_kv_stats *out);

int bc_context_n_ctx(const bc_context *ctx); /* most positions of one sequence */
int bc_context_n_kv(const bc_context *ctx);  /* positions of the pool (whole blocks) */
int bc_context_n_seq(const bc_context *ctx);

/* Calls fn(arg, i) for every i < n on the context's worker threads (the
 * calling thread among them) and returns when all have returned: for the
 * per-sequence work between two decode calls, above all sampling (with
 * 125,696 logits, 0.1 to 1 ms a sequence), which would otherwise run one
 * sequence after another while the threads wait. fn must be safe to run
 * concurrently for different i (bc_generator_step is, for distinct
 * generators). Not while a decode of ctx runs. */
void bc_context_parallel_for(bc_context *ctx, void (*fn)(void *arg, int i), void *arg, int n);
int bc_context_n_batch(const bc_context *ctx);
int bc_context_n_threads(const bc_context *ctx);

/* ------------------------------------------------------------------------ */
/* LoRA adapters                                                            */
/* ------------------------------------------------------------------------ */

/* A LoRA adapter for one model, as PEFT's save_pretrained writes it: a
 * directory with adapter_config.json and adapter_model.safetensors or
 * adapter_model.bin. Applied unmerged, on the fly, to any base dtype:
 * y = W x + scale * B (A x), for the adapted matrices of the layers the
 * adapter names. Immutable once loaded; may be shared by any number of
 * threads and contexts; must outlive every sequence that runs under it. It
 * holds only its own factors (r x (in + out) per matrix), never a copy of
 * the base. */
typedef struct bc_lora bc_lora;

/* Modules an adapter may adapt (bits of bc_lora_info.modules). */
typedef enum bc_lora_module {
    BC_LORA_MODULE_W_PACK = 1 << 0, /* the fused Q/K/V matrix (B's rows split as W_pack's) */
    BC_LORA_MODULE_O_PROJ = 1 << 1,
    BC_LORA_MODULE_GATE_PROJ = 1 << 2,
    BC_LORA_MODULE_UP_PROJ = 1 << 3,
    BC_LORA_MODULE_DOWN_PROJ = 1 << 4,
} bc_lora_module;

/* Loads the adapter at path (its directory, or its adapter_config.json) for
 * model. Its scale is lora_alpha / r (lora_alpha / sqrt(r) with use_rslora)
 * times user_scale (1 = as trained). Anything the engine cannot apply exactly
 * (another peft_type, DoRA, a bias other than "none", a module the model does
 * not have, a rank or shape that does not match the base, a truncated or
 * malformed file) is refused with BC_STATUS_ERROR_FORMAT or
 * BC_STATUS_ERROR_MODEL and a one-line message in err naming the file,
 * tensor or field. On success *out owns the adapter (bc_lora_free). */
bc_status bc_lora_load(const bc_model *model, const char *path, float user_scale, bc_lora **out, char *err,
                       size_t err_size);

void bc_lora_free(bc_lora *lora);

/* What an adapter is; filled by bc_lora_get_info(). Strings are valid while
 * the adapter lives. */
typedef struct bc_lora_info {
    const char *path; /* as given to bc_lora_load */
    int rank;         /* r */
    float alpha;      /* lora_alpha */
    bool rslora;      /* use_rslora: scale alpha / sqrt(r) */
    float scale;      /* the scale applied: alpha / r (or / sqrt(r)) times user_scale */
    uint32_t modules; /* bc_lora_module bits of the adapted modules */
    int n_matrices;   /* adapted matrices (layers times modules) */
    bc_dtype dtype;   /* element type the A and B factors are held in: the files' (f32, f16
                       * or bf16) when they all share one, else f32 */
    uint64_t bytes;   /* memory the adapter holds: its factors, r x (in + out) elements per
                       * adapted matrix (B's rows padded to a multiple of 64), and its record */
    uint64_t id;      /* unique among the adapters this process has loaded; keys the prefix cache */
} bc_lora_info;

void bc_lora_get_info(const bc_lora *lora, bc_lora_info *info);

/* Most adapters one sequence runs under at once. */
#define BC_MAX_SEQ_LORAS 8

/* Sets the adapters sequence seq runs under: n_loras (0 <= n_loras <=
 * BC_MAX_SEQ_LORAS) adapters of this context's model, whose products add up;
 * 0 = the base model alone (the default of every sequence). The sequence
 * must hold no positions (bc_context_seq_len 0), so that all of its keys and
 * values are computed under the same adapters; it keeps the setting through
 * bc_context_seq_truncate, and bc_context_seq_fork gives it to the fork. The
 * prefix cache keys its blocks by the adapters (their ids and scales) as well
 * as the token ids: bc_context_seq_reuse gives a sequence only blocks computed
 * under exactly its adapters. The context keeps the pointers, not copies.
 * BC_STATUS_ERROR_ARGUMENT (nothing changes) for a non-empty sequence, an
 * out-of-range seq or count, or an adapter of another model. A decode batch
 * may mix sequences under different adapters and none: each sequence's
 * logits are bit-identical to those it gets alone. */
bc_status bc_context_seq_set_loras(bc_context *ctx, int seq, const bc_lora *const *loras, int n_loras);

/* ------------------------------------------------------------------------ */
/* Profile: where decode time goes                                          */
/* ------------------------------------------------------------------------ */

/* The kinds of step of the forward pass, in data-flow order. Each layer's
 * steps add to the same kinds. */
typedef enum bc_profile_op {
    BC_PROFILE_OP_EMBEDDING = 0, /* token embedding rows */
    BC_PROFILE_OP_ATTN_NORM,     /* rmsnorm before attention */
    BC_PROFILE_OP_QKV,           /* Q, K, V products (W_pack, or split Q/K/V weights and their reordering) */
    BC_PROFILE_OP_ROPE,          /* RoPE angles and rotation of Q and K (0 with ALiBi) */
    BC_PROFILE_OP_KV_STORE,      /* K and V into the cache */
    BC_PROFILE_OP_ATTENTION,     /* scores, softmax (with the ALiBi bias) and the weighted sum of V */
    BC_PROFILE_OP_O_PROJ,        /* o_proj product */
    BC_PROFILE_OP_RESIDUAL,      /* the two residual adds */
    BC_PROFILE_OP_FFN_NORM,      /* rmsnorm before the MLP */
    BC_PROFILE_OP_GATE_UP,       /* gate and up products and silu(gate) * up (one fused pass) */
    BC_PROFILE_OP_DOWN,          /* down product */
    BC_PROFILE_OP_OUTPUT_NORM,   /* model.norm of the rows that want logits */
    BC_PROFILE_OP_LM_HEAD,       /* lm_head product */
    BC_PROFILE_OP_NORM_HEAD,     /* NormHead row scales on the logits (0 without NormHead) */
    BC_PROFILE_OP_OTHER,         /* the rest of the decode time: batch checks, bookkeeping */
    BC_PROFILE_OP_COUNT
} bc_profile_op;

/* "embedding", "attn_norm", "qkv", "rope", "kv_store", "attention", "o_proj",
 * "residual", "ffn_norm", "gate_up", "down", "output_norm",
 * "lm_head", "norm_head", "other"; "?" outside the enum. */
const char *bc_profile_op_name(bc_profile_op op);

/* Wall-clock time (CLOCK_MONOTONIC) summed over the successful
 * bc_context_decode calls since the context was made or last reset. A step
 * that runs on the worker threads counts once, as the time the caller waits
 * for it. The op figures add up to total_seconds: OTHER is the difference
 * between the total and the sum of the others. */
typedef struct bc_profile {
    double op_seconds[BC_PROFILE_OP_COUNT]; /* per kind of step */
    double total_seconds;                   /* inside bc_context_decode, first line to last */
    int64_t n_decodes;                      /* successful bc_context_decode calls */
    int64_t n_tokens;                       /* entries those calls decoded */
} bc_profile;

/* Copies ctx's figures into *out. BC_STATUS_ERROR_ARGUMENT (no message;
 * *out zeroed) when ctx was made without bc_context_params.profile. */
bc_status bc_context_profile(const bc_context *ctx, bc_profile *out);

/* Sets ctx's figures to zero. */
void bc_context_profile_reset(bc_context *ctx);

/* ======================================================================== */
/* Sampling and stop strings                                                */
/* ======================================================================== */
/*
 * A sampler picks the next token from a row of logits with the semantics of
 * Hugging Face `generate`: first the logit biases, if any
 * (bc_sampler_set_logit_bias), then the repetition penalty over every id seen so far
 * (prompt and output; a positive logit is divided by the penalty, a negative
 * one multiplied, once per distinct id), then OpenAI's presence and
 * frequency penalties over the generated ids only (logit -= presence_penalty
 * if the id was generated at least once, and -= frequency_penalty times the
 * number of times it was generated), then temperature, top-k (ties with
 * the k-th logit kept), top-p (drop the tokens whose ascending cumulative
 * probability is <= 1 - top_p, always keeping the most likely), min-p (drop
 * tokens less likely than min_p times the most likely), then a draw.
 * Temperature 0 is greedy: the arg-max of the penalized logits.
 * The draw uses the sampler's own seeded generator (xoshiro256**), so the
 * same seed gives the same tokens on every run, machine and thread count.
 * A sampler belongs to one thread at a time; it allocates only at init
 * (and in bc_sampler_set_logit_bias).
 */

typedef struct bc_sampler_params {
    float temperature;        /* 0 = greedy; default 1.0 */
    int top_k;                /* 0 = off; default 50 */
    float top_p;              /* 1.0 = off; default 1.0 */
    float min_p;              /* 0.0 = off; default 0.0 */
    float repetition_penalty; /* 1.0 = off; default 1.0 */
    float presence_penalty;   /* OpenAI's; 0 = off; default 0 (ids from bc_sampler_accept_generated) */
    float frequency_penalty;  /* OpenAI's; 0 = off; default 0 (ids from bc_sampler_accept_generated) */
    uint64_t seed;            /* default 0x5eed */
} bc_sampler_params;

/* Hugging Face generate's defaults (no generation_config.json). */
bc_sampler_params bc_sampler_default_params(void);

/* The defaults of model's generation_config.json (temperature, top_k,
 * top_p, repetition_penalty; do_sample false gives temperature 0), or
 * bc_sampler_default_params() where it has none. */
bc_sampler_params bc_model_sampler_params(const bc_model *model);

/* Checks params (finite, temperature >= 0, top_k >= 0, top_p in (0, 1],
 * min_p in [0, 1], repetition_penalty > 0, presence_penalty and
 * frequency_penalty finite); NULL or a static message. */
const char *bc_sampler_params_check(bc_sampler_params params);

typedef struct bc_sampler bc_sampler;

/* A sampler over ids [0, n_vocab). BC_STATUS_ERROR_ARGUMENT for bad params
 * (see bc_sampler_params_check), BC_STATUS_ERROR_MEMORY. */
bc_status bc_sampler_init(bc_sampler_params params, int n_vocab, bc_sampler **out);
void bc_sampler_free(bc_sampler *s);

/* Adds bias[i] to the logit of ids[i] before everything else (OpenAI's
 * logit_bias: -100 all but bans an id, +100 all but forces it); replaces
 * the previous biases, n = 0 removes them. Kept by bc_sampler_reset.
 * BC_STATUS_ERROR_ARGUMENT for an id outside [0, n_vocab) or a bias that
 * is not finite (nothing changes then), BC_STATUS_ERROR_MEMORY. */
bc_status bc_sampler_set_logit_bias(bc_sampler *s, const int32_t *ids, const float *bias, size_t n);

/* Forgets the ids seen and generated and restarts the generator from the seed. */
void bc_sampler_reset(bc_sampler *s);

/* Records an id as seen (for the repetition penalty): call it for every
 * prompt id and every generated id. Ids outside [0, n_vocab) are ignored. */
void bc_sampler_accept(bc_sampler *s, int32_t id);

/* Records a generated id: as bc_sampler_accept(), and also counts it for the
 * presence and frequency penalties (which see only generated ids, not the
 * prompt). Ids outside [0, n_vocab) are ignored. With a grammar it advances
 * the matcher past id and returns what bc_grammar_matcher_accept() returns:
 * BC_STATUS_ERROR_MEMORY when a matching limit is passed (the text nests
 * deeper than the matcher follows), BC_STATUS_ERROR_ARGUMENT when the
 * matcher does not allow id; after either, bc_sampler_sample returns -1
 * until bc_sampler_reset (or another bc_sampler_set_grammar), so the text
 * never leaves the grammar's language unnoticed. */
bc_status bc_sampler_accept_generated(bc_sampler *s, int32_t id);

/* Picks the next id from logits (n_vocab values; not modified). With a
 * grammar (bc_sampler_set_grammar), -1 when its matcher fails (out of
 * memory, a grammar limit passed, an id it could not take) or allows
 * nothing. */
int32_t bc_sampler_sample(bc_sampler *s, const float *logits);

/* ------------------------------------------------------------------------ */
/* Stop strings                                                             */
/* ------------------------------------------------------------------------ */
/*
 * Watches generated text for stop strings. Text pushed in comes back out
 * except for a tail that could still become a stop string, which is held
 * until it either completes one (then it and everything after are dropped)
 * or cannot (then it is released). Pushed text made of whole UTF-8
 * characters comes out in whole characters.
 */
typedef struct bc_stop_matcher bc_stop_matcher;

/* stops: n non-empty, valid UTF-8 strings (copied). BC_STATUS_ERROR_ARGUMENT
 * with a message in err for an empty or malformed one. */
bc_status bc_stop_matcher_init(const char *const *stops, size_t n, bc_stop_matcher **out, char *err, size_t err_size);
void bc_stop_matcher_free(bc_stop_matcher *m);
void bc_stop_matcher_reset(bc_stop_matcher *m);

/* Pushes len bytes; *out (valid until the next call) gets the text that is
 * safe to show. Returns true once a stop string has been seen: *out then
 * holds the text before it, and later pushes return nothing. */
bool bc_stop_matcher_push(bc_stop_matcher *m, const char *text, size_t len, const char **out, size_t *out_len);

/* Releases the held tail (at the end of generation). */
void bc_stop_matcher_flush(bc_stop_matcher *m, const char **out, size_t *out_len);

/* ======================================================================== */
/* Tokenizer: SentencePiece BPE, streaming detokenizer, Baichuan chat format */
/* ======================================================================== */
/*
 * The tokenizer reads a SentencePiece tokenizer.model (any BPE model, not
 * only Baichuan's) and produces exactly the ids SentencePiece's own encoder
 * produces: same normalization (identity or a precompiled character map,
 * dummy prefix, extra-whitespace removal, U+2581 escaping), user-defined
 * symbols matched whole, merges in score order with SentencePiece's
 * tie-break (leftmost first), unused pieces split back, byte fallback to
 * <0xXX> pieces, or runs of unknown characters as one unknown id. Malformed
 * UTF-8 bytes become U+FFFD, one per byte, as in SentencePiece. Control
 * pieces (<s>, </s>, <reserved_N>) are never produced from text.
 *
 * A bc_tokenizer is immutable once loaded: any number of threads may encode
 * and decode with it at once. A bc_detokenizer belongs to one thread.
 */

typedef struct bc_tokenizer bc_tokenizer;

/* Loads a tokenizer. `path` is a model directory (reads tokenizer.model,
 * and when present tokenizer_config.json for add_bos_token/add_eos_token,
 * generation_config.json for the chat role tokens and max_new_tokens, and
 * config.json for model_max_length) or a tokenizer.model file (then those
 * settings take their defaults: no BOS/EOS, roles 195/196, 4096 positions,
 * 2048 new tokens). Only BPE models load (model_type 2).
 * `path` may also be a GGUF file: its tokenizer.ggml.* vocabulary (model
 * "llama": tokens, scores, token types, special ids) is rebuilt into the
 * same tokenizer; add_dummy_prefix from tokenizer.ggml.add_space_prefix and
 * extra-whitespace removal from tokenizer.ggml.remove_extra_whitespaces
 * (llama.cpp's defaults when absent: true, false), no character map unless
 * tokenizer.ggml.precompiled_charsmap is present, byte fallback when byte
 * pieces exist; add_bos from tokenizer.ggml.add_bos_token (default true, as
 * llama.cpp), chat role ids and max_new_tokens from baichuan.user_token_id,
 * baichuan.assistant_token_id, baichuan.max_new_tokens (written by
 * bc_model_quantize; else 195, 196, 2048), max_length from
 * baichuan.context_length.
 * On success *out owns the tokenizer; free it with bc_tokenizer_free().
 * On failure *out is NULL and err (err_size bytes, may be 0) holds a message
 * naming the file, the field and, for a malformed file, the byte offset. */
bc_status bc_tokenizer_load(const char *path, bc_tokenizer **out, char *err, size_t err_size);

void bc_tokenizer_free(bc_tokenizer *tok);

/* Kinds of pieces (SentencePiece's ModelProto.SentencePiece.Type). */
typedef enum bc_piece_type {
    BC_PIECE_TYPE_NORMAL = 1,       /* learned by BPE */
    BC_PIECE_TYPE_UNKNOWN = 2,      /* <unk> */
    BC_PIECE_TYPE_CONTROL = 3,      /* <s>, </s>, <reserved_N>: never from text, decode to "" */
    BC_PIECE_TYPE_USER_DEFINED = 4, /* always matched whole in text */
    BC_PIECE_TYPE_UNUSED = 5,       /* in the vocabulary but never produced */
    BC_PIECE_TYPE_BYTE = 6,         /* <0x00>..<0xFF>, byte fallback */
} bc_piece_type;

/* What a tokenizer is; filled by bc_tokenizer_get_info(). Strings are valid
 * while the tokenizer lives. */
typedef struct bc_tokenizer_info {
    const char *model_path; /* the tokenizer.model read */
    int n_vocab;            /* pieces in the model */
    int bos_id, eos_id;     /* the <s> and </s> control pieces, -1 if absent */
    int pad_id, unk_id;     /* -1 if absent */
    bool add_bos, add_eos;  /* tokenizer_config.json add_bos_token / add_eos_token (default false) */
    bool byte_fallback;
    const char *normalizer; /* normalizer_spec.name, e.g. "identity" */
    bool has_charsmap;      /* a non-identity character map is applied */
    bool add_dummy_prefix, remove_extra_whitespaces, escape_whitespaces;
    int n_piece_types[7]; /* pieces per bc_piece_type (index 1..6) */
} bc_tokenizer_info;

void bc_tokenizer_get_info(const bc_tokenizer *tok, bc_tokenizer_info *info);

/* The piece of id as stored in the model (U+2581 for spaces), NUL-terminated,
 * valid while tok lives; *len (may be NULL) is its length in bytes. Returns
 * NULL if id is outside [0, n_vocab). type may be NULL. */
const char *bc_tokenizer_piece(const bc_tokenizer *tok, int32_t id, size_t *len, bc_piece_type *type);

/* Encodes text_len bytes of text (any bytes; malformed UTF-8 is handled as
 * SentencePiece does). add_bos / add_eos: BC_SWITCH_AUTO follows
 * tokenizer_config.json, ON/OFF force it. Sets *n_ids to the number of ids
 * the text encodes to and writes the first min(*n_ids, ids_cap) of them.
 * Returns BC_STATUS_OK when they all fitted; BC_STATUS_ERROR_ARGUMENT when
 * ids_cap was too small (call again with ids_cap >= *n_ids; pass ids_cap 0
 * to learn the size), or when a BOS/EOS is asked for and the model has no
 * such piece (then *n_ids is 0); BC_STATUS_ERROR_MEMORY. */
bc_status bc_tokenizer_encode(const bc_tokenizer *tok, const char *text, size_t text_len, bc_switch add_bos,
                              bc_switch add_eos, int32_t *ids, size_t ids_cap, size_t *n_ids);

/* Decodes ids to text exactly as SentencePiece's DecodeIds: control pieces
 * vanish, byte pieces are reassembled (a byte that does not complete a valid
 * UTF-8 sequence becomes U+FFFD), U+2581 becomes a space, <unk> becomes
 * " \u2047 " (the model's unk_surface), and the leading space of the first
 * piece is dropped when the model adds a dummy prefix.
 * Sets *text_len to the decoded length (without a NUL) and writes the first
 * min(*text_len, text_cap) bytes, then a NUL if there is room for it.
 * Returns BC_STATUS_OK when the text fitted (*text_len <= text_cap);
 * BC_STATUS_ERROR_ARGUMENT when it did not (call again with a larger
 * buffer), or when an id is outside [0, n_vocab) (then *text_len is 0);
 * BC_STATUS_ERROR_MEMORY. */
bc_status bc_tokenizer_decode(const bc_tokenizer *tok, const int32_t *ids, size_t n_ids, char *text, size_t text_cap,
                              size_t *text_len);

/* A streaming detokenizer: feed ids one at a time and get the text they
 * add. Concatenating every push's text and the final flush's text gives
 * exactly bc_tokenizer_decode() of the whole sequence. A push never returns
 * part of a UTF-8 sequence: bytes of an incomplete character (from byte
 * pieces) are held back until the character is complete or proven invalid.
 * Allocates only when its buffer must grow. One thread at a time. */
typedef struct bc_detokenizer bc_detokenizer;

/* tok must outlive the detokenizer. */
bc_status bc_detokenizer_init(const bc_tokenizer *tok, bc_detokenizer **out);

void bc_detokenizer_free(bc_detokenizer *detok);

/* Starts a new sequence (as if freshly initialized). */
void bc_detokenizer_reset(bc_detokenizer *detok);

/* Feeds one id. *text (valid until the next call on detok) receives
 * *text_len bytes of complete UTF-8, possibly none. BC_STATUS_ERROR_ARGUMENT
 * for an id outside [0, n_vocab) (the state is unchanged). */
bc_status bc_detokenizer_push(bc_detokenizer *detok, int32_t id, const char **text, size_t *text_len);

/* Ends the sequence: returns what was held back (an unfinished UTF-8
 * sequence from byte pieces, as U+FFFD per byte), then resets. */
bc_status bc_detokenizer_flush(bc_detokenizer *detok, const char **text, size_t *text_len);

/* ------------------------------------------------------------------------ */
/* Chat format (Baichuan Chat models)                                       */
/* ------------------------------------------------------------------------ */
/*
 * The model input for a conversation, as Baichuan's build_chat_input makes
 * it: encode(system), then for each round (a round starts at each user
 * message) user_token_id + encode(user) and assistant_token_id +
 * encode(assistant), and a final assistant_token_id when the last message
 * is not the assistant's. No BOS, no EOS.
 * Budget: max_input = max_length - max_new_tokens; max_history = max_input -
 * len(system). Walking from the newest round back, a round is kept when the
 * history is still empty or it fits in max_history; the walk stops at the
 * first round that does not fit, or once the history reaches max_history.
 * Finally system + history (+ assistant_token_id) is cut from the left to
 * max_input ids.
 */

typedef enum bc_chat_role {
    BC_CHAT_ROLE_SYSTEM = 0, /* only as the first message */
    BC_CHAT_ROLE_USER = 1,
    BC_CHAT_ROLE_ASSISTANT = 2,
} bc_chat_role;

typedef struct bc_chat_message {
    bc_chat_role role;
    const char *content; /* content_len bytes of UTF-8 */
    size_t content_len;
} bc_chat_message;

typedef struct bc_chat_params {
    int32_t user_token_id;      /* default: generation_config.json user_token_id, else 195 */
    int32_t assistant_token_id; /* default: generation_config.json assistant_token_id, else 196 */
    int max_length;             /* default: config.json model_max_length, else 4096 */
    int max_new_tokens;         /* default: generation_config.json max_new_tokens, else 2048 */
} bc_chat_params;

/* The chat settings of tok's model directory (tok may be NULL: the official
 * Baichuan2 Chat values). */
bc_chat_params bc_chat_default_params(const bc_tokenizer *tok);

/* Builds the model input for n_messages messages. Output convention as in
 * bc_tokenizer_encode(). Errors (message in err): no messages, a system
 * message that is not first, an unknown role, role ids outside the
 * vocabulary, or max_new_tokens leaving no room for input
 * (BC_STATUS_ERROR_ARGUMENT); BC_STATUS_ERROR_MEMORY. */
bc_status bc_chat_encode(const bc_tokenizer *tok, const bc_chat_message *messages, size_t n_messages,
                         bc_chat_params params, int32_t *ids, size_t ids_cap, size_t *n_ids, char *err,
                         size_t err_size);

/* ======================================================================== */
/* Grammars: structured output                                              */
/* ======================================================================== */
/*
 * A grammar constrains generation to the texts it matches. It is written in
 * GBNF, llama.cpp's notation (rules `name ::= alternatives`, "literals",
 * [character classes], `.`, ( groups ), `*` `+` `?` `{m}` `{m,}` `{m,n}`,
 * `#` comments; the start rule is `root`), or made from a JSON Schema. It
 * compiles to a pushdown automaton over bytes (character classes become
 * their UTF-8 byte sequences), bound to one tokenizer: at each step a
 * matcher gives the ids whose decoded bytes keep the output a prefix of
 * some text the grammar matches, and the end-of-sequence id only where the
 * text so far is a whole match. Pieces decode as bc_detokenizer does (byte
 * pieces as their byte, U+2581 as a space, the leading space dropped where
 * the detokenizer drops it); control, unknown and unused pieces are never
 * allowed.
 *
 * A bc_grammar is immutable once made, except for its token-mask cache
 * (guarded by its own lock): any number of matchers in any threads may use
 * it at once. A matcher belongs to one thread at a time. Limits, each
 * refused with a message naming it: 1 MiB of grammar text, 65,536 rule
 * elements after expansion, nesting of groups 64 deep, repetition counts
 * up to 1,000. While matching: at most 16,384 parses alive at once (each
 * string of an enum is one at its start) and 2,048 rules open inside each
 * other (how deep the output may nest); a token mask may take at most 400
 * expansions per vocabulary piece. Passing one of these makes the call
 * fail (BC_STATUS_ERROR_MEMORY) rather than stall.
 *
 * Speed: the allowed ids are cached per grammar by the top four frames of
 * each parse (rules' positions), with the pieces whose fate depends on
 * what lies below walked again at each step; the first mask of each such
 * state walks the whole vocabulary once (milliseconds), later ones take a
 * fraction of a millisecond on 125,696 pieces (bench/bench_grammar).
 */

typedef struct bc_grammar bc_grammar;

/* Compiles GBNF text (len bytes) for tok (which must outlive the grammar;
 * NULL makes a grammar that can only bc_grammar_match, without matchers).
 * Errors (BC_STATUS_ERROR_ARGUMENT, message in err naming the line, column
 * and rule): syntax errors, an undefined rule, no `root` rule, left
 * recursion, a grammar that matches nothing, a limit passed;
 * BC_STATUS_ERROR_MEMORY. */
bc_status bc_grammar_init_gbnf(const bc_tokenizer *tok, const char *gbnf, size_t len, bc_grammar **out, char *err,
                               size_t err_size);

/* Compiles a JSON Schema (JSON text, len bytes) to a grammar of the JSON
 * texts that validate against it, as bc_json_schema_to_gbnf() writes it.
 * Errors as there and as bc_grammar_init_gbnf(). */
bc_status bc_grammar_init_json_schema(const bc_tokenizer *tok, const char *schema, size_t len, bc_grammar **out,
                                      char *err, size_t err_size);

/* Writes the GBNF grammar of a JSON Schema: *gbnf (malloc'd, NUL-terminated;
 * free() it). The subset of OpenAI's structured outputs: type (one or a
 * list), properties (a property whose schema is false never appears),
 * required, additionalProperties (false, true or a schema), enum, const,
 * items (a schema or false), prefixItems, minItems, maxItems, anyOf,
 * oneOf (as anyOf), allOf of one schema, $defs / definitions and local
 * $ref (a JSON pointer: "#", "#/$defs/x"; recursion
 * allowed once it has consumed text), string pattern (an ECMA 262 regular
 * expression: literals, escapes, classes with \d \w \s, `.`, groups,
 * (?:), |, * + ? {m} {m,} {m,n}, ^ $ at the ends; without ^ or $ it
 * searches, as JSON Schema says), format (date-time and time per RFC 3339,
 * date with the days of each month (29 in February), email as
 * local-part@domain.tld in ASCII, uuid), minLength, maxLength (characters:
 * an escape is one), minimum, maximum, exclusiveMinimum, exclusiveMaximum
 * (exactly: integers with non-integral bounds rounded inward, numbers
 * digit by digit against the bounds' decimal forms), and the
 * annotations title, description, default, examples, $schema, $id,
 * $comment, readOnly, writeOnly, deprecated. $ref, anyOf, oneOf and allOf
 * stand alone beside annotations; type beside enum or const keeps the
 * values of that type; keywords of one type do not constrain the others
 * (`{"minimum": 1}` still takes any string); a string takes one of
 * pattern, format or lengths; a required name must be in properties. The
 * schema `{}` or `true` is any JSON value; schema NULL (len 0) is any JSON
 * object (OpenAI's json_object).
 *
 * What the texts look like: properties come in the order of `properties`
 * (the required ones always, the others optionally), extra keys after them;
 * an extra key is any string but a declared name as json.dumps writes it
 * (one spelled with other escapes is not caught). An integer is written
 * without fraction or exponent, a bounded number without exponent; strings
 * of const, enum and property names as json.dumps(ensure_ascii=False)
 * writes them (escapes \" \\ \b \f \n \r \t, other controls \u00xx),
 * numbers there in their shortest form (2.5, 1.0). Whitespace between
 * tokens is at most one newline and 20 spaces or tabs; none before or after
 * the whole text.
 *
 * Limits, each refused with a message naming the place: schemas nested 64
 * deep, enum of 1,000 values, 1,000 properties (and prefixItems), 32
 * anyOf/oneOf branches and 64 optional properties in a row (the matcher
 * follows each as a live parse, up to 16,384 at once: branches that stay
 * alike for long, nested in one another, multiply; enum values share one
 * parse per common prefix), property names of 1,000 bytes,
 * counts (minLength, maxLength, minItems, maxItems, regex {m,n}) up to
 * 1,000, patterns of 1,000 bytes,
 * bounds within +-10^15, 1 MiB of grammar text and 60,000 grammar elements
 * as estimated from above (the compiler's limit is 65,536; a converted
 * grammar always compiles). A keyword outside the subset is
 * BC_STATUS_ERROR_ARGUMENT with a message naming it and its JSON pointer
 * path (e.g. "unsupported keyword 'patternProperties' at
 * /properties/tags"); so are malformed JSON (with its line and column),
 * bad values, dangling $refs, a $ref cycle that consumes nothing, and
 * grammars past the limits. BC_STATUS_ERROR_MEMORY. */
bc_status bc_json_schema_to_gbnf(const char *schema, size_t len, char **gbnf, char *err, size_t err_size);

void bc_grammar_free(bc_grammar *g);

/* Whether text (len bytes) is accepted: *prefix is set when it is a prefix
 * of a match, *complete when it is a whole match (either may be NULL). A
 * text that passes a matching limit (see above) gives false for both. */
void bc_grammar_match(const bc_grammar *g, const char *text, size_t len, bool *prefix, bool *complete);

/* The state of one generation under a grammar. */
typedef struct bc_grammar_matcher bc_grammar_matcher;

/* A matcher at the start of the text. g must outlive it.
 * BC_STATUS_ERROR_MEMORY. */
bc_status bc_grammar_matcher_init(const bc_grammar *g, bc_grammar_matcher **out);
void bc_grammar_matcher_free(bc_grammar_matcher *m);

/* Back to the start of the text. */
void bc_grammar_matcher_reset(bc_grammar_matcher *m);

/* The ids allowed next, as a bit set: bit (id % 32) of allowed[id / 32],
 * for ids [0, n_vocab) ((n_vocab + 31) / 32 words written). Ids past the
 * tokenizer's vocabulary are never allowed; the end-of-sequence id is
 * allowed exactly when bc_grammar_matcher_can_end(). BC_STATUS_ERROR_MEMORY. */
bc_status bc_grammar_matcher_allowed(bc_grammar_matcher *m, uint32_t *allowed, int n_vocab);

/* Advances past id. BC_STATUS_ERROR_ARGUMENT when id is not allowed (the
 * state is unchanged); the end-of-sequence id is accepted when the text
 * may end, and leaves the matcher done. */
bc_status bc_grammar_matcher_accept(bc_grammar_matcher *m, int32_t id);

/* True when the text so far is a whole match (the end-of-sequence id is
 * allowed). */
bool bc_grammar_matcher_can_end(const bc_grammar_matcher *m);

/* Constrains s's draws to m (borrowed; NULL removes it): bc_sampler_sample
 * gives every id m does not allow a logit of -inf before the rest of the
 * chain, and bc_sampler_accept_generated advances m. bc_sampler_reset resets m.
 * Without memory for the mask, bc_sampler_sample returns -1: a grammar is
 * never silently dropped. */
void bc_sampler_set_grammar(bc_sampler *s, bc_grammar_matcher *m);

/* ======================================================================== */
/* Generation: one sequence's continuation                                  */
/* ======================================================================== */
/*
 * A generator is the state of generating one continuation: a sampler (with
 * its logit biases), a grammar matcher when the output is constrained, a
 * streaming detokenizer, a stop-string matcher, the count of generated ids
 * and a token limit. Each step takes the logits the model gave for the last
 * id and returns the next id to feed it, the text that id makes safe to
 * show, and whether the text has ended. The model itself stays with the
 * caller: a generator never decodes, so one context may serve any number of
 * generators (a request's n choices, each with its own seed), and a
 * generator keeps its state while its sequence is dropped and computed
 * again (a preemption).
 *
 * One step, in this order:
 *   1. the limit: when max_tokens ids were generated already (a limit of 0)
 *      the text ends (BC_FINISH_LENGTH) before anything is drawn;
 *   2. the draw (the sampler's chain, under the grammar's mask);
 *   3. the eos id ends the text (BC_FINISH_EOS); it is not counted, not
 *      recorded and adds no text;
 *   4. any other id is counted and recorded (repetition, presence and
 *      frequency penalties; the grammar's matcher advances past it), its
 *      log-probabilities are taken if asked for, and its text goes through
 *      the detokenizer and the stop matcher;
 *   5. a completed stop string ends the text (BC_FINISH_STOP: the text stops
 *      before it), else reaching max_tokens ends it (BC_FINISH_LENGTH);
 *   6. an ending other than a stop string releases what is held: the
 *      detokenizer's unfinished character (as U+FFFD per byte) goes through
 *      the stop matcher, and the stop matcher's held tail follows; a stop
 *      string completed by that release makes the ending BC_FINISH_STOP
 *      (the tail then stops before it).
 * Concatenated, every step's text and tail (and bc_generator_end's tail)
 * are bc_tokenizer_decode() of the generated ids (eos excluded), cut
 * before the first occurrence of any stop string.
 *
 * Errors: fallible calls return a bc_status; the message of the last failed
 * call is readable with bc_generator_error(). A failed step leaves the
 * generator failed: the held text is dropped, and later steps return the
 * same status until bc_generator_reset().
 *
 * A generator belongs to one thread at a time; the tokenizer and the
 * grammar it uses may be shared. It allocates at init, and afterwards only
 * when a text buffer must grow (and once on a grammar's error path).
 */

/* Most top log-probabilities one step gives (OpenAI's top_logprobs <= 20). */
#define BC_MAX_TOP_LOGPROBS 20

/* How a generated text ended. */
typedef enum bc_finish {
    BC_FINISH_NONE = 0,   /* still generating */
    BC_FINISH_EOS = 1,    /* the end-of-sequence id was drawn */
    BC_FINISH_STOP = 2,   /* a stop string was completed (the text stops before it) */
    BC_FINISH_LENGTH = 3, /* max_tokens ids were generated */
    BC_FINISH_ENDED = 4,  /* the caller ended it (bc_generator_end) */
} bc_finish;

typedef struct bc_generator_params {
    bc_sampler_params sampler; /* default bc_sampler_default_params() */
    /* The ids that may be drawn are [0, n_vocab), at most the tokenizer's
     * vocabulary (a model's logits may have more rows than its tokenizer has
     * pieces, or fewer); 0 (default) = the tokenizer's. */
    int n_vocab;
    int32_t eos_id; /* the id that ends the text; -1 (default): none */
    /* Most ids to generate (the eos id is not counted); -1 (default): no
     * limit (the caller ends the text, e.g. at its context's end). Changed
     * later with bc_generator_set_max_tokens(). */
    int max_tokens;
    /* -1 (default): no log-probabilities; 0..BC_MAX_TOP_LOGPROBS: each
     * generated id's log-probability, and those of the `logprobs` most
     * likely ids (bc_generated.logprob, .top). */
    int logprobs;
    /* OpenAI's logit_bias (see bc_sampler_set_logit_bias): n_bias ids and
     * their biases, copied at init. Default none. */
    const int32_t *bias_ids;
    const float *bias;
    size_t n_bias;
    /* Stop strings (see bc_stop_matcher_init): n_stops non-empty UTF-8
     * strings, copied at init. Default none. */
    const char *const *stops;
    size_t n_stops;
    /* The output constraint, or NULL (default): the generator makes its own
     * matcher of it. Borrowed: it must outlive the generator. */
    const bc_grammar *grammar;
} bc_generator_params;

/* The defaults above. */
bc_generator_params bc_generator_default_params(void);

/* The defaults for generating with model and tok: the sampler's from the
 * model's generation_config.json (bc_model_sampler_params), n_vocab the
 * smaller of the model's and the tokenizer's vocabularies, and eos_id the
 * model's eos_token_id; the rest as bc_generator_default_params(). */
bc_generator_params bc_model_generator_params(const bc_model *model, const bc_tokenizer *tok);

typedef struct bc_generator bc_generator;

/* A generator for tok (which must outlive it, as must params.grammar),
 * ready for its first step. On failure *out is NULL and err (err_size
 * bytes, may be 0) says what was wrong: BC_STATUS_ERROR_ARGUMENT for bad
 * sampler params (bc_sampler_params_check's message), n_vocab outside
 * [0, the tokenizer's n_vocab], logprobs outside [-1, BC_MAX_TOP_LOGPROBS],
 * a bias id outside [0, n_vocab) or a bias that is not finite, an empty or
 * malformed stop string (the stop matcher's message: "stop string 2 is
 * empty"), or a grammar compiled for another tokenizer (or none);
 * BC_STATUS_ERROR_MEMORY. */
bc_status bc_generator_init(const bc_tokenizer *tok, bc_generator_params params, bc_generator **out, char *err,
                            size_t err_size);

void bc_generator_free(bc_generator *g);

/* Starts a new text, as if freshly made: forgets the ids recorded and
 * generated, restarts the sampler's generator from the seed, the grammar
 * from its start, and drops what the detokenizer and the stop matcher
 * hold. Keeps the params (and the limit last set). */
void bc_generator_reset(bc_generator *g);

/* Records n input ids (the prompt) for the repetition penalty; call it once
 * per text, before the first step (after a preemption the generator
 * remembers them: do not record them again). Ids outside [0, n_vocab) are
 * ignored. */
void bc_generator_accept_prompt(bc_generator *g, const int32_t *ids, size_t n);

/* Sets the token limit (-1: none) for the steps that follow. */
void bc_generator_set_max_tokens(bc_generator *g, int max_tokens);

/* One id's log-probability. */
typedef struct bc_token_logprob {
    int32_t id;
    double logprob;
} bc_token_logprob;

/* What one step gave. */
typedef struct bc_generated {
    /* The id drawn: feed it to the model for the next step's logits while
     * finish is BC_FINISH_NONE. The eos id with BC_FINISH_EOS; -1 when the
     * limit ended the text before a draw. */
    int32_t id;
    bc_finish finish; /* BC_FINISH_NONE while the text goes on */
    /* The text this id makes safe to show (complete UTF-8 characters, a
     * possible start of a stop string held back), text_len bytes; then,
     * when the step ended the text, the tail that ending released. Both
     * are valid until the next call on the generator; the tail is empty
     * while finish is BC_FINISH_NONE. */
    const char *text;
    size_t text_len;
    const char *tail;
    size_t tail_len;
    /* With params.logprobs >= 0, for a generated id (not the eos id, not
     * -1): the log-softmax of the raw logits (before biases, penalties,
     * temperature and the grammar), in double: max + log(sum of
     * exp(logit - max)) subtracted from the logit. logprob is id's; top
     * holds the n_top = min(logprobs, n_vocab) most likely ids, most likely
     * first, ties by ascending id. Otherwise logprob is 0 and n_top 0. */
    double logprob;
    int n_top;
    bc_token_logprob top[BC_MAX_TOP_LOGPROBS];
} bc_generated;

/* One step (see the order above) from logits (n_vocab values, the model's
 * last row for this sequence; not modified; not read when the limit ends
 * the text first). Returns BC_STATUS_OK with *out filled. Errors, which
 * leave the generator failed (*out has id -1 and no text):
 * BC_STATUS_ERROR_MEMORY when the grammar's matcher fails (out of memory,
 * or a matching limit passed: see "Grammars") or the text buffer cannot
 * grow; BC_STATUS_ERROR_ARGUMENT when the grammar allows no id at all (not
 * even the end). A step on a text that has ended is refused with
 * BC_STATUS_ERROR_ARGUMENT and changes nothing (reset first). */
bc_status bc_generator_step(bc_generator *g, const float *logits, bc_generated *out);

/* Ends the text now, for a caller that stops it (Ctrl-C; a context that is
 * full): releases what the detokenizer and the stop matcher hold into
 * *tail (*tail_len bytes, valid until the next call on g), as step 6 of
 * the order above does. Returns BC_FINISH_STOP when that release completed
 * a stop string (the tail stops before it), else BC_FINISH_ENDED. On a
 * text that has ended already (or a failed generator) it releases nothing
 * and returns the ending it had (BC_FINISH_NONE when failed). A cancelled
 * text needs no end: reset or free the generator. */
bc_finish bc_generator_end(bc_generator *g, const char **tail, size_t *tail_len);

/* Ids generated since the last reset (the eos id not counted). */
int bc_generator_n_generated(const bc_generator *g);

/* The message of the last failed call on g ("" if none), valid until the
 * next call on g. */
const char *bc_generator_error(const bc_generator *g);

#ifdef __cplusplus
}
#endif

#endif /* BAICHUAN_H */
