#!/usr/bin/python3
"""train_default_model.py - train the small embedded default model (models/default/).

A Baichuan2-architecture model (RoPE, fused W_pack, RMSNorm eps 1e-6, SiLU MLP,
NormHead, no biases, untied lm_head) with its own SentencePiece BPE tokenizer,
trained on CPU with Debian's python3-torch on the classical Chinese poetry and
prose of Debian's fortunes-zh and the English quotations of fortunes /
fortunes-min. The output is an official Hugging Face model directory that
`baichuan run` reads like any Baichuan2 checkpoint.

Set-up (Debian 12) and the command that wrote models/default/:

    apt-get install -y python3-torch python3-sentencepiece python3-numpy \
        fortunes fortunes-min fortunes-zh
    tools/train_default_model.py --out models/default

Then, to compare the C engine's logits with this script's model and to print
samples from the written model:

    tools/train_default_model.py --out models/default --check-engine build/baichuan
    tools/train_default_model.py --out models/default --samples

Speed. Debian's torch 1.13 does float32 matrix products with the reference
BLAS (~4 GFLOP/s here) but bfloat16 ones with oneDNN (~150-400 GFLOP/s on a
CPU with AVX-512 BF16), so training runs under bfloat16 autocast (float32
master weights, norms, softmax and loss). What is left is dominated by
element-wise work and by memory: this VM faults fresh pages in slowly, so
glibc is told to keep freed buffers (fast_malloc) and the loss is computed in
chunks small enough to come from that heap. On the shared two-core machine
of the committed run one torch thread was faster than two.

Reproducibility. Everything is seeded and the data order is fixed, so a rerun
with the same packages writes the same tokenizer and, up to floating-point
summation order, the same weights.

Results of the committed run (Debian 12, torch 1.13.1, sentencepiece 0.1.97,
fortunes 1:1.99.1-7.3, fortunes-zh 2.98; a two-core AMD EPYC VM shared with
other jobs, load 3-7): 17,566 documents (4,686 Chinese, 12,880 English),
1.16 M training tokens per epoch; 8,916,224 parameters; 1200 steps of 16 x 256
tokens (4.9 M tokens, ~4.2 epochs) in 2016 s of training (34 min; ~2070 s in
all); validation loss 4.181 nats/token (perplexity 65.4): Chinese 4.732,
English 4.010. The engine check: max |diff| / max |logit| 8.9e-7.

Stages, in order (each one logs what it did):
  1. corpus     read the fortune files from /usr/share/games/fortunes, strip
                the `%` separators and ANSI colour codes, keep the classical
                Chinese texts (see is_classical) and the English files listed
                in ENGLISH_FILES, drop duplicates; 5% of the documents, chosen
                by a seeded shuffle, are held out for validation.
  2. tokenizer  SentencePiece BPE with Baichuan's settings (see
                train_tokenizer), trained on the training documents only.
  3. model      AdamW, linear warm-up then cosine decay, on packed rows of
                CONTEXT tokens, each document followed by </s> (id 2), the
                Chinese documents twice per epoch; the documents are
                reshuffled (seeded) for every epoch.
  4. export     the weights rounded to bfloat16; config.json,
                generation_config.json, tokenizer_config.json,
                tokenizer.model, model.safetensors (BF16, written here from
                the safetensors specification) and train.log; then the
                validation loss of exactly that model in float32 arithmetic
                and a few samples.

models/default/README.md describes the model, its data and licences.
"""

import argparse
import collections
import ctypes
import json
import math
import os
import random
import re
import shutil
import struct
import subprocess
import sys
import tempfile
import time

# Threads that wait for work sleep instead of spinning: on a shared CPU a
# spinning OpenMP thread steals the core its partner needs (read when torch
# loads libgomp, so it is set before the import).
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import numpy as np
import sentencepiece as spm
import torch
import torch.nn.functional as F

SEED = 20240501
FORTUNE_DIR = "/usr/share/games/fortunes"

# Tokenizer.
VOCAB_SIZE = 8000
USER_TOKEN = "<reserved_102>"  # Baichuan's names for the chat role tokens;
ASSISTANT_TOKEN = "<reserved_103>"  # here they get ids 3 and 4 (see export).

# Model shape: Baichuan2-7B's layout scaled down (n_ff/n_embd 2.75 against
# 11008/4096 = 2.69, rounded to a multiple of 64, which oneDNN's bfloat16
# kernels run much faster); 8.9 M parameters, stored as bfloat16 (17.8 MB).
N_EMBD = 256
N_HEAD = 4  # head_dim 64
N_FF = 704
N_LAYER = 6
CONTEXT = 256  # training sequence length
MAX_POSITION = 1024  # what config.json advertises (RoPE extrapolates a little)
ROPE_THETA = 10000.0
RMS_EPS = 1e-6

# Optimisation.
BATCH = 16
STEPS = 1200
EVAL_EVERY = 200
LR_MAX = 2e-3
LR_MIN = 1e-4
WARMUP = 100
WEIGHT_DECAY = 0.1
GRAD_CLIP = 1.0
VAL_FRACTION = 0.05
ZH_REPEAT = 2  # the Chinese documents appear this many times per epoch (they are ~1/4 of the tokens)

# English fortune files used (all of fortunes-min and fortunes except those
# that are mostly pictures, chat logs, song lyrics, TV quotes or a modern
# translation).
ENGLISH_FILES = [
    "art", "computers", "cookie", "debian", "definitions", "disclaimer", "drugs", "education", "ethnic", "food",
    "fortunes", "goedel", "humorists", "kids", "law", "linux", "linuxcookie", "literature", "love", "magic",
    "medicine", "men-women", "miscellaneous", "news", "paradoxum", "people", "perl", "pets", "platitudes",
    "politics", "pratchett", "riddles", "science", "sports", "wisdom", "work",
]
CHINESE_FILES = ["tang300", "song100", "chinese"]

# ---------------------------------------------------------------------------
# 1. Corpus
# ---------------------------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
CJK = re.compile(r"[\u3400-\u9fff]")
# Attribution lines of the `chinese` file: "-- 辛弃疾《贺新郎》", "--《论语》",
# "-- 论语，为政篇", "--锦瑟，李商隐".
ATTRIBUTION = re.compile(r"^\s*--\s*(.*)$")
# Twentieth-century writers, modern books, anime and the like in `chinese`:
# not public domain (or not classical), so their entries are left out.
MODERN = [
    "鲁迅", "赫拉利", "吴军", "毛泽东", "陈毅", "冰心", "胡志明", "余光中", "朱自清", "钱钟书", "围城", "巴金",
    "老舍", "王健林", "王国维", "乔布斯", "黑格尔", "央视", "1992", "炼金术", "显卡", "网吧", "喜大普奔",
    "言峰", "卫宫", "Iskandar", "Altria", "Debian", "UNIX", "Raymond", "Lift of Reason", "にちじょう",
]
# Dynasty tags of the prose classics ("[唐] 韩愈", "[先秦] 韩非").
DYNASTY = re.compile(r"^\s*\[(先秦|两汉|魏晋|唐|唐代|宋|宋代|元|明|明代|清|未知)\]")
CLASSIC_HEADINGS = ("《詩經", "大学 - ", "中庸 - ", "墨子 ")
CJK_PUNCT = "，。、；：？！“”‘’《》（）・·—…「」『』　"


def read_fortunes(name):
    """The entries of one fortune file, without the `%` separator lines."""
    with open(os.path.join(FORTUNE_DIR, name), encoding="utf-8", errors="replace") as f:
        text = f.read()
    entries, cur = [], []
    for line in text.split("\n"):
        if line.rstrip() == "%":
            entries.append("\n".join(cur))
            cur = []
        else:
            cur.append(line)
    entries.append("\n".join(cur))
    return entries


def tidy(text):
    """Strip colour codes, per-line indentation and trailing blanks; keep at
    most one empty line in a row."""
    text = ANSI.sub("", text).replace("\xa0", " ").replace("\r", "").replace("\t", " ")
    lines = [ln.strip() for ln in text.split("\n")]
    out = []
    for ln in lines:
        if ln == "" and (not out or out[-1] == ""):
            continue
        out.append(ln)
    return "\n".join(out).strip()


def is_classical(raw, text):
    """Whether an entry of fortunes-zh is a classical (public-domain) text.

    tang300 and song100 are entirely Tang and Song poetry. The `chinese`
    file also carries the Debian Reference, Debian's code of conduct, chat
    jokes and modern authors; an entry is kept when it has no Latin letters
    and no modern name (MODERN), and it either carries an attribution line,
    a dynasty tag or a classic's heading, or is a one-line saying made of
    Chinese characters and punctuation only."""
    if re.search(r"[A-Za-z0-9│┌─]", text) or any(m in raw for m in MODERN):
        return False
    if not CJK.search(text):
        return False
    lines = text.split("\n")
    if any(ATTRIBUTION.match(ln) for ln in lines):
        return True
    if DYNASTY.match(lines[1] if len(lines) > 1 else "") or text.startswith(CLASSIC_HEADINGS):
        return True
    if len(lines) == 1 and all(CJK.match(c) or c in CJK_PUNCT for c in text):
        return True
    return False


def english_ok(text):
    """Drop pictures and tables: an English entry must be mostly letters."""
    if not text:
        return False
    letters = sum(c.isalpha() or c == " " for c in text)
    return letters >= 0.75 * len(text) and not re.search(r"[\u3000-\u9fff]", text)


def build_corpus(log):
    """(train, val): lists of (language, text) documents in a fixed order."""
    docs, seen = [], set()
    counts = collections.Counter()
    for name in CHINESE_FILES:
        for raw in read_fortunes(name):
            text = tidy(raw)
            if name == "chinese" and not is_classical(raw, text):
                continue
            text = re.sub(r"^--\s*", "-- ", text, flags=re.M)
            if len(text) < 4 or text in seen:
                continue
            seen.add(text)
            docs.append(("zh", text))
            counts["zh:" + name] += 1
    for name in ENGLISH_FILES:
        for raw in read_fortunes(name):
            text = tidy(raw)
            if not english_ok(text) or len(text) < 8 or text in seen:
                continue
            seen.add(text)
            docs.append(("en", text))
            counts["en"] += 1
    rng = random.Random(SEED)
    order = list(range(len(docs)))
    rng.shuffle(order)
    n_val = int(round(VAL_FRACTION * len(docs)))
    val = [docs[i] for i in sorted(order[:n_val])]
    train = [docs[i] for i in sorted(order[n_val:])]
    chars = collections.Counter()
    for lang, text in docs:
        chars[lang] += len(text)
    log(f"corpus: {len(docs)} documents ({dict(counts)}); characters zh {chars['zh']}, en {chars['en']}; "
        f"{len(train)} train, {len(val)} validation")
    return train, val


# ---------------------------------------------------------------------------
# 2. Tokenizer
# ---------------------------------------------------------------------------


def train_tokenizer(train_docs, out_path, log):
    """SentencePiece BPE with the settings of Baichuan's tokenizer: identity
    normalization, no dummy prefix, whitespace kept as it is, byte fallback,
    digits split, whitespace-only pieces allowed; <unk> 0, <s> 1, </s> 2, no
    pad piece (pad_token_id 0 is <unk>, as in Baichuan); the two chat role
    tokens as control pieces 3 and 4."""
    out_path = os.path.abspath(out_path)
    cwd = os.getcwd()
    with tempfile.TemporaryDirectory() as tmp:
        # The trainer records its input and output paths in the model file:
        # relative names keep the file byte-for-byte reproducible.
        os.chdir(tmp)
        with open("corpus.txt", "w", encoding="utf-8") as f:
            for _, text in train_docs:
                for line in text.split("\n"):
                    if line:
                        f.write(line + "\n")
        prefix = "tokenizer"
        spm.SentencePieceTrainer.train(
            input="corpus.txt", model_prefix=prefix, model_type="bpe", vocab_size=VOCAB_SIZE,
            character_coverage=0.9995, normalization_rule_name="identity", add_dummy_prefix=False,
            remove_extra_whitespaces=False, byte_fallback=True, split_digits=True,
            allow_whitespace_only_pieces=True, max_sentencepiece_length=16, max_sentence_length=16384,
            unk_id=0, bos_id=1, eos_id=2, pad_id=-1, control_symbols=[USER_TOKEN, ASSISTANT_TOKEN],
            num_threads=2, minloglevel=2)
        shutil.copyfile(prefix + ".model", out_path)
        os.chdir(cwd)
    sp = spm.SentencePieceProcessor(model_file=out_path)
    assert sp.piece_to_id(USER_TOKEN) == 3 and sp.piece_to_id(ASSISTANT_TOKEN) == 4
    assert sp.unk_id() == 0 and sp.bos_id() == 1 and sp.eos_id() == 2
    log(f"tokenizer: {sp.get_piece_size()} pieces")
    return sp


def encode_docs(sp, docs):
    """Each document's ids followed by </s> (id 2)."""
    return [sp.encode(text) + [sp.eos_id()] for _, text in docs]


def pack(docs, rng, n_seq_tokens):
    """Concatenate the documents in a seeded random order into one stream and
    cut it into rows of n_seq_tokens; every row starts at a document start
    when the previous row ended at a document boundary, so short prompts at
    position 0 look like training data."""
    order = list(range(len(docs)))
    if rng is not None:
        rng.shuffle(order)
    rows, cur = [], []
    for i in order:
        cur.extend(docs[i])
        while len(cur) >= n_seq_tokens:
            rows.append(cur[:n_seq_tokens])
            cur = cur[n_seq_tokens:]
    if cur:
        rows.append(cur + [0] * (n_seq_tokens - len(cur)))  # id 0 padding, masked out of the loss
    return torch.tensor(rows, dtype=torch.long)


# ---------------------------------------------------------------------------
# 3. Model: Baichuan2-7B's definition (shared/DESIGN.md, "Layer")
# ---------------------------------------------------------------------------


def rms_norm(x, w):
    """w * x / sqrt(mean(x^2) + eps)"""
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + RMS_EPS))


def linear(x, w):
    """x (..., in) @ w (out, in)^T. Under autocast (training) the product runs
    in bfloat16; in float32 without gradients (evaluation, sampling) it goes
    through oneDNN, ~8x faster here than Debian's reference BLAS, with the
    same float32 arithmetic."""
    if torch.is_grad_enabled() or torch.is_autocast_cpu_enabled() or x.dtype != torch.float32:
        return x @ w.t()
    shape = x.shape
    y = torch._C._nn.mkldnn_linear(x.reshape(-1, shape[-1]).contiguous().to_mkldnn(), w.to_mkldnn(), None)
    return y.to_dense().view(*shape[:-1], w.shape[0])


def rotate_half(x):
    half = x.shape[-1] // 2
    return torch.cat((-x[..., half:], x[..., :half]), dim=-1)


class Baichuan(torch.nn.Module):
    """The model, its parameters named as in the official checkpoints."""

    def __init__(self, n_vocab):
        super().__init__()
        E, F_, L = N_EMBD, N_FF, N_LAYER
        self.shapes = collections.OrderedDict([("model.embed_tokens.weight", (n_vocab, E))])
        for i in range(L):
            p = f"model.layers.{i}."
            self.shapes[p + "input_layernorm.weight"] = (E,)
            self.shapes[p + "self_attn.W_pack.weight"] = (3 * E, E)  # rows: Q | K | V
            self.shapes[p + "self_attn.o_proj.weight"] = (E, E)
            self.shapes[p + "post_attention_layernorm.weight"] = (E,)
            self.shapes[p + "mlp.gate_proj.weight"] = (F_, E)
            self.shapes[p + "mlp.up_proj.weight"] = (F_, E)
            self.shapes[p + "mlp.down_proj.weight"] = (E, F_)
        self.shapes["model.norm.weight"] = (E,)
        self.shapes["lm_head.weight"] = (n_vocab, E)
        self.names = list(self.shapes)
        self.params = torch.nn.ParameterDict()
        for name, shape in self.shapes.items():
            if len(shape) == 1:
                t = torch.ones(shape)
            else:
                std = 0.02
                if name.endswith(("o_proj.weight", "down_proj.weight")):
                    std = 0.02 / math.sqrt(2 * L)  # GPT-2's scaled init of the residual projections
                t = torch.randn(shape) * std
            self.params[name.replace(".", "__")] = torch.nn.Parameter(t)
        D = E // N_HEAD
        inv_freq = ROPE_THETA ** (-torch.arange(0, D, 2, dtype=torch.float64) / D)  # theta^(-2i/D)
        freqs = torch.outer(torch.arange(MAX_POSITION, dtype=torch.float64), inv_freq)
        emb = torch.cat((freqs, freqs), dim=-1)  # rotate-half layout
        self.register_buffer("cos", emb.cos().float(), persistent=False)  # (MAX_POSITION, D)
        self.register_buffer("sin", emb.sin().float(), persistent=False)

    def w(self, name):
        return self.params[name.replace(".", "__")]

    def forward(self, ids):
        """ids (B, T) -> logits (B, T, V)"""
        return self.logits(self.hidden(ids))

    def logits(self, x):
        """final hidden states (..., E) -> logits (..., V), through NormHead:
        every row of lm_head divided by its L2 norm."""
        head = F.normalize(self.w("lm_head.weight"), dim=-1, eps=1e-12)
        return linear(x, head)

    def hidden(self, ids, cache=None):
        """ids (B, T) -> hidden states after the final norm (B, T, E).

        cache: None, or a list that holds one [K, V] pair per layer (each
        (B, H, T_past, D)) and is extended in place; the new tokens then sit at
        positions T_past .. T_past + T - 1."""
        B, T = ids.shape
        E, H = N_EMBD, N_HEAD
        D = E // H
        past = cache[0][0].shape[2] if cache else 0
        x = F.embedding(ids, self.w("model.embed_tokens.weight"))  # (B, T, E)
        cos, sin = self.cos[past:past + T], self.sin[past:past + T]  # (T, D)
        # query i (position past + i) sees keys 0 .. past + i
        mask = torch.ones(T, past + T, dtype=torch.bool).triu(past + 1)
        for i in range(N_LAYER):
            p = f"model.layers.{i}."
            xn = rms_norm(x, self.w(p + "input_layernorm.weight"))
            qkv = linear(xn, self.w(p + "self_attn.W_pack.weight"))  # (B, T, 3E): Q | K | V
            q, k, v = qkv.view(B, T, 3, H, D).permute(2, 0, 3, 1, 4)  # each (B, H, T, D)
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
            if cache is not None:
                if len(cache) <= i:
                    cache.append([k, v])
                else:
                    k = cache[i][0] = torch.cat((cache[i][0], k), dim=2)
                    v = cache[i][1] = torch.cat((cache[i][1], v), dim=2)
            att = (q @ k.transpose(-1, -2)).float() / math.sqrt(D)  # (B, H, T, past + T)
            att = att.masked_fill(mask, float("-inf")).softmax(-1)
            y = (att.to(v.dtype) @ v).transpose(1, 2).reshape(B, T, E)
            h = x + linear(y, self.w(p + "self_attn.o_proj.weight"))
            hn = rms_norm(h, self.w(p + "post_attention_layernorm.weight"))
            gate = linear(hn, self.w(p + "mlp.gate_proj.weight"))  # (B, T, F)
            up = linear(hn, self.w(p + "mlp.up_proj.weight"))
            x = h + linear(F.silu(gate) * up, self.w(p + "mlp.down_proj.weight"))
        return rms_norm(x, self.w("model.norm.weight"))

    def n_params(self):
        return sum(p.numel() for p in self.parameters())

    @torch.no_grad()
    def round_to_bf16(self):
        """Replace every weight by its bfloat16 value (what export writes)."""
        for prm in self.parameters():
            prm.copy_(prm.to(torch.bfloat16).float())


def loss_on(model, rows, chunk=512):
    """Summed next-token cross entropy (nats) and the number of targets,
    padding (id 0 targets) excluded. The vocabulary projection and softmax
    run over `chunk` tokens at a time so that no tensor reaches 32 MiB (see
    fast_malloc)."""
    h = model.hidden(rows[:, :-1]).reshape(-1, N_EMBD)
    targets = rows[:, 1:].reshape(-1)
    total = 0.0
    for i in range(0, len(targets), chunk):
        logits = model.logits(h[i:i + chunk]).float()
        total = total + F.cross_entropy(logits, targets[i:i + chunk], ignore_index=0, reduction="sum")
    return total, int((targets != 0).sum())


@torch.no_grad()
def evaluate(model, rows, bf16):
    """Mean loss (nats/token) over rows; bf16: matrix products in bfloat16
    (as in training; fast), else all in float32 (the exported model exactly)."""
    model.eval()
    total, n = 0.0, 0
    for i in range(0, len(rows), 16):
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=bf16):
            s, c = loss_on(model, rows[i:i + 16])
        total += float(s)
        n += c
    model.train()
    return total / n


def lr_at(step, steps):
    """Linear warm-up over WARMUP steps, then cosine decay to LR_MIN at the last step."""
    if step < WARMUP:
        return LR_MAX * (step + 1) / WARMUP
    t = (step - WARMUP) / max(1, steps - 1 - WARMUP)
    return LR_MIN + 0.5 * (LR_MAX - LR_MIN) * (1 + math.cos(math.pi * t))


def train_model(model, train_ids, val_rows, log, steps):
    """AdamW over packed rows of CONTEXT + 1 tokens, BATCH rows a step; the
    matrix products run in bfloat16 (autocast; the master weights, norms,
    softmax and loss stay float32): on this CPU oneDNN's bfloat16 products
    are ~50x faster than the float32 BLAS."""
    decay = [p for p in model.parameters() if p.dim() == 2]
    no_decay = [p for p in model.parameters() if p.dim() < 2]
    opt = torch.optim.AdamW([{"params": decay, "weight_decay": WEIGHT_DECAY},
                             {"params": no_decay, "weight_decay": 0.0}], lr=LR_MAX, betas=(0.9, 0.95), eps=1e-8)
    rng = random.Random(SEED + 1)
    rows, cursor, epoch = pack(train_ids, rng, CONTEXT + 1), 0, 0
    t0 = time.time()
    run_loss, run_n = 0.0, 0
    for step in range(steps):
        if cursor + BATCH > len(rows):
            rows, cursor, epoch = pack(train_ids, rng, CONTEXT + 1), 0, epoch + 1
        batch = rows[cursor:cursor + BATCH]
        cursor += BATCH
        for g in opt.param_groups:
            g["lr"] = lr_at(step, steps)
        with torch.autocast("cpu", dtype=torch.bfloat16):
            s, c = loss_on(model, batch)
        loss = s / c
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), GRAD_CLIP)
        opt.step()
        run_loss += float(loss)
        run_n += 1
        if (step + 1) % 50 == 0 or step + 1 == steps:
            msg = (f"step {step + 1}/{steps} epoch {epoch} lr {lr_at(step, steps):.2e} "
                   f"train loss {run_loss / run_n:.3f} ({time.time() - t0:.0f} s)")
            if (step + 1) % EVAL_EVERY == 0 or step + 1 == steps:
                msg += f" val loss (bf16) {evaluate(model, val_rows, bf16=True):.3f}"
            log(msg)
            run_loss, run_n = 0.0, 0
    return time.time() - t0


# ---------------------------------------------------------------------------
# Sampling (to show what the model writes; the C engine has its own sampler)
# ---------------------------------------------------------------------------


@torch.no_grad()
def sample(model, sp, prompt, n_new, temperature, seed, top_k=0, top_p=1.0, penalty=1.0):
    """float32, KV-cached; greedy when temperature is 0; HF's repetition
    penalty over prompt and output ids, then temperature, top-k, top-p;
    stops at </s>."""
    ids = sp.encode(prompt)
    g = torch.Generator().manual_seed(seed)
    cache, out = [], []
    x = torch.tensor([ids])
    for _ in range(n_new):
        logits = model.logits(model.hidden(x, cache)[0, -1]).double()
        for t in set(ids + out) if penalty != 1.0 else ():
            logits[t] = logits[t] / penalty if logits[t] > 0 else logits[t] * penalty
        if temperature == 0:
            nxt = int(logits.argmax())
        else:
            logits = logits / temperature
            if top_k:
                logits[logits < torch.topk(logits, top_k).values[-1]] = float("-inf")
            if top_p < 1.0:
                p_sorted, order = logits.softmax(-1).sort(descending=True)
                drop = p_sorted.cumsum(-1) - p_sorted >= top_p  # keep the smallest set reaching top_p
                logits[order[drop]] = float("-inf")
            nxt = int(torch.multinomial(logits.softmax(-1), 1, generator=g))
        if nxt == sp.eos_id() or len(ids) + len(out) + 1 >= MAX_POSITION:
            break
        out.append(nxt)
        x = torch.tensor([[nxt]])
    return sp.decode(out)


SAMPLE_PROMPTS = ["床前明月光，", "春眠不觉晓，", "《静夜思》\n作者：李白\n", "The", "Love is", "A man"]


def show_samples(model, sp, log, prompts=SAMPLE_PROMPTS):
    """Greedy, then generation_config.json's sampling settings."""
    model.eval()
    for prompt in prompts:
        for temp, seed in [(0, 0), (0.7, 1), (0.7, 2)]:
            text = sample(model, sp, prompt, 100, temp, seed, top_k=40, top_p=0.9, penalty=1.1)
            log(f"sample temperature {temp} seed {seed} {prompt!r} -> {text!r}")


# ---------------------------------------------------------------------------
# 4. Export: the official Hugging Face layout
# ---------------------------------------------------------------------------


def bf16_bits(arr):
    """float32 array -> bfloat16 bit patterns (uint16), round to nearest even."""
    bits = np.ascontiguousarray(arr, dtype="<f4").view("<u4").astype(np.uint64)
    bits = (bits + 0x7FFF + ((bits >> 16) & 1)) >> 16
    return bits.astype("<u2")


def write_safetensors(path, tensors):
    """tensors: list of (name, float32 numpy array), written as BF16 in that
    order. Layout: u64 little-endian header length, JSON header padded with
    spaces to a multiple of 8, then the raw little-endian data."""
    header, offset, blobs = {}, 0, []
    for name, arr in tensors:
        data = bf16_bits(arr).tobytes()
        header[name] = {"dtype": "BF16", "shape": list(arr.shape), "data_offsets": [offset, offset + len(data)]}
        offset += len(data)
        blobs.append(data)
    header["__metadata__"] = {"format": "pt"}
    hjson = json.dumps(header, separators=(",", ":")).encode()
    hjson += b" " * ((8 - len(hjson) % 8) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(hjson)))
        f.write(hjson)
        for b in blobs:
            f.write(b)


def read_safetensors(path):
    """name -> float32 numpy array (F32 or BF16 files)."""
    with open(path, "rb") as f:
        n = struct.unpack("<Q", f.read(8))[0]
        header = json.loads(f.read(n))
        data = f.read()
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        a, b = info["data_offsets"]
        if info["dtype"] == "BF16":
            arr = (np.frombuffer(data[a:b], dtype="<u2").astype(np.uint32) << 16).view(np.float32)
        else:
            arr = np.frombuffer(data[a:b], dtype="<f4")
        out[name] = arr.reshape(info["shape"]).copy()
    return out


def export(model, sp, out_dir):
    config = {
        "architectures": ["BaichuanForCausalLM"],
        "model_type": "baichuan",
        "hidden_act": "silu",
        "hidden_size": N_EMBD,
        "intermediate_size": N_FF,
        "num_hidden_layers": N_LAYER,
        "num_attention_heads": N_HEAD,
        "vocab_size": sp.get_piece_size(),
        "max_position_embeddings": MAX_POSITION,
        "model_max_length": MAX_POSITION,
        "position_encoding": "rope",
        "norm_head": True,
        "rms_norm_eps": RMS_EPS,
        "initializer_range": 0.02,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "tie_word_embeddings": False,
        "use_cache": True,
        "torch_dtype": "bfloat16",
    }
    generation = {
        "bos_token_id": 1,
        "eos_token_id": 2,
        "pad_token_id": 0,
        "user_token_id": sp.piece_to_id(USER_TOKEN),
        "assistant_token_id": sp.piece_to_id(ASSISTANT_TOKEN),
        "do_sample": True,
        "temperature": 0.7,
        "top_k": 40,
        "top_p": 0.9,
        "repetition_penalty": 1.1,
        "max_new_tokens": 200,
    }
    tok_config = {
        "tokenizer_class": "BaichuanTokenizer",
        "add_bos_token": False,
        "add_eos_token": False,
        "bos_token": "<s>",
        "eos_token": "</s>",
        "unk_token": "<unk>",
        "pad_token": "<unk>",
        "clean_up_tokenization_spaces": False,
        "model_max_length": MAX_POSITION,
        "sp_model_kwargs": {},
    }
    for name, obj in [("config.json", config), ("generation_config.json", generation),
                      ("tokenizer_config.json", tok_config)]:
        with open(os.path.join(out_dir, name), "w", encoding="utf-8") as f:
            json.dump(obj, f, indent=2, ensure_ascii=False)
            f.write("\n")
    write_safetensors(os.path.join(out_dir, "model.safetensors"),
                      [(n, model.w(n).detach().numpy()) for n in model.names])


def load(model_dir):
    """(model, tokenizer) from an exported directory."""
    sp = spm.SentencePieceProcessor(model_file=os.path.join(model_dir, "tokenizer.model"))
    model = Baichuan(sp.get_piece_size())
    weights = read_safetensors(os.path.join(model_dir, "model.safetensors"))
    with torch.no_grad():
        for name in model.names:
            model.w(name).copy_(torch.from_numpy(weights[name]))
    return model.eval(), sp


def check_engine(model_dir, engine, log):
    """Compare the logits of the C engine (`baichuan logits`) with this
    script's float32 model on the same weights: a short mixed text, and a
    long one (past the training context, and in several engine batches)."""
    model, sp = load(model_dir)
    short = "床前明月光，疑是地上霜。\n-- 李白《静夜思》\nThe quick brown fox jumps over the lazy dog. 1234"
    long = "\n".join([short, "春眠不觉晓，处处闻啼鸟。夜来风雨声，花落知多少。",
                      "A man who is not afraid of the sea will soon be drowned,\n-- J. M. Synge"] * 8)
    worst = 0.0
    for text, batch in [(short, 512), (long, 100)]:
        ids = sp.encode(text)
        with tempfile.TemporaryDirectory() as tmp:
            out = os.path.join(tmp, "logits.f32")
            subprocess.run([engine, "logits", "-m", model_dir, "--tokens", " ".join(map(str, ids)), "-b", str(batch),
                            "-o", out], check=True)
            got = np.fromfile(out, dtype="<f4").reshape(len(ids), -1)
        with torch.no_grad():
            want = model(torch.tensor([ids]))[0].double().numpy()
        diff, scale = np.abs(got - want).max(), np.abs(want).max()
        worst = max(worst, diff / scale)
        log(f"engine vs torch: {len(ids)} tokens (engine batch {batch}): max |diff| {diff:.3e}, "
            f"max |logit| {scale:.3f}, ratio {diff / scale:.3e}; argmax agrees at "
            f"{int((got.argmax(-1) == want.argmax(-1)).sum())}/{len(ids)} positions")
    log(f"worst ratio {worst:.3e}: {'ok' if worst < 1e-4 else 'FAIL'} (tolerance 1e-4)")
    return 0 if worst < 1e-4 else 1


def fast_malloc():
    """Keep freed memory in glibc's heap: buffers up to 32 MiB are then reused
    instead of being unmapped and faulted in again every step, which on this
    VM costs more than the arithmetic."""
    libc = ctypes.CDLL("libc.so.6")
    libc.mallopt(-3, 32 << 20)  # M_MMAP_THRESHOLD
    libc.mallopt(-1, 1 << 30)  # M_TRIM_THRESHOLD


def main():
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out", default="models/default", help="output directory (default models/default)")
    ap.add_argument("--steps", type=int, default=STEPS, help=f"training steps (default {STEPS})")
    ap.add_argument("--samples", action="store_true", help="only print samples from the model in --out")
    ap.add_argument("--prompt", action="append", help="with --samples: prompt to use (repeatable)")
    ap.add_argument("--check-engine", metavar="BAICHUAN",
                    help="only compare the logits of the C engine (path to the baichuan binary) with this "
                         "script's float32 model, for the model in --out")
    ap.add_argument("--threads", type=int, default=1,
                    help="torch threads (default 1: on this shared two-core machine one thread trained faster "
                         "than two, 1.3 against 1.6 s a step, the other core being busy anyway)")
    args = ap.parse_args()

    fast_malloc()
    torch.set_num_threads(args.threads)
    torch.manual_seed(SEED)
    random.seed(SEED)
    if args.check_engine:
        return check_engine(args.out, args.check_engine, print)
    if args.samples:
        model, sp = load(args.out)
        show_samples(model, sp, print, args.prompt or SAMPLE_PROMPTS)
        return 0

    os.makedirs(args.out, exist_ok=True)
    logf = open(os.path.join(args.out, "train.log"), "w", encoding="utf-8")

    def log(msg):
        print(msg, flush=True)
        logf.write(msg + "\n")
        logf.flush()

    t_start = time.time()
    log(f"torch {torch.__version__}, sentencepiece {spm.__version__}, {torch.get_num_threads()} threads")
    train_docs, val_docs = build_corpus(log)
    sp = train_tokenizer(train_docs, os.path.join(args.out, "tokenizer.model"), log)
    train_ids = encode_docs(sp, train_docs)
    train_ids += [ids for (lang, _), ids in zip(train_docs, train_ids) if lang == "zh"] * (ZH_REPEAT - 1)
    val_ids = encode_docs(sp, val_docs)
    log(f"tokens: train {sum(map(len, train_ids))} per epoch (Chinese x{ZH_REPEAT}), "
        f"validation {sum(map(len, val_ids))}")
    val_rows = pack(val_ids, None, CONTEXT + 1)
    model = Baichuan(sp.get_piece_size())
    log(f"model: {model.n_params()} parameters (n_embd {N_EMBD}, n_head {N_HEAD}, n_ff {N_FF}, n_layer {N_LAYER}, "
        f"n_vocab {sp.get_piece_size()})")
    train_s = train_model(model, train_ids, val_rows, log, args.steps)
    log(f"trained in {train_s:.0f} s")

    model.round_to_bf16()
    export(model, sp, args.out)
    t0 = time.time()
    val_loss = evaluate(model, val_rows, bf16=False)
    by_lang = {}
    for lang in ("zh", "en"):
        rows = pack([ids for (l, _), ids in zip(val_docs, val_ids) if l == lang], None, CONTEXT + 1)
        by_lang[lang] = evaluate(model, rows, bf16=False)
    log(f"validation (exported bfloat16 weights, float32 arithmetic): loss {val_loss:.4f} nats/token, "
        f"perplexity {math.exp(val_loss):.2f}; Chinese documents alone {by_lang['zh']:.4f} "
        f"(ppl {math.exp(by_lang['zh']):.2f}), English alone {by_lang['en']:.4f} (ppl {math.exp(by_lang['en']):.2f}) "
        f"[{time.time() - t0:.0f} s]")
    show_samples(model, sp, log)
    log(f"total {time.time() - t_start:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
