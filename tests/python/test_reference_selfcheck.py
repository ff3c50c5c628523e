#!/usr/bin/python3
"""test_reference_selfcheck.py - checks tools/reference.py against a second formulation.

    test_reference_selfcheck.py [--fixtures DIR] [--bin IGNORED]

For every fixture (generated into a temporary directory unless --fixtures
names one):

  * weights: what reference.py loads equals the generator's master weights
    rounded to the stored dtype by torch (checks the safetensors writer and
    reader, the bf16 rounding, the .bin storage offsets and shared storages);
  * variant: reference.py detects the position encoding and NormHead the
    fixture is meant to have, and honours the overrides;
  * logits: reference.py (numpy, pair-wise RoPE, relative ALiBi bias) agrees
    with a torch float64 model written in the structure of the official
    modeling code (rotate_half with a cos/sin cache; Baichuan-13B's ALiBi mask
    of slope * key position plus a triu(-inf) future mask; F.normalize head),
    loading safetensors through its own torch.frombuffer reader;
  * sanity: causality, dependence on earlier tokens, logits that are neither
    flat nor one-hot, and position encoding and NormHead that both matter;
  * sensitivity: plausible engine bugs (interleaved-pair RoPE, wrong ALiBi
    slope rule, 1/head_dim scale, heads laid out the other way in W_pack, gate
    and up swapped, RMSNorm weights ignored) move the logits by more than
    twice the tolerance test_logits.py allows for the fixture's dtype, so that
    test would catch them.

Prints one line per check and `N passed, M failed`; exits 0 only if all pass.
"""

import argparse
import json
import math
import os
import shutil
import struct
import sys
import tempfile

import numpy as np
import torch
import torch.nn.functional as F

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import bc_testlib  # noqa: E402
from bc_testlib import SEQ_LENGTHS, Tally, rel_err, token_sequence, tolerance  # noqa: E402

import gen_fixtures  # noqa: E402
import reference  # noqa: E402

TORCH_DTYPE = {"f32": torch.float32, "f16": torch.float16, "bf16": torch.bfloat16}
ST_TORCH = {"F32": torch.float32, "F16": torch.float16, "BF16": torch.bfloat16}

# What each fixture is meant to be: (position encoding, NormHead).
EXPECTED_VARIANT = {
    "b2_7b_f32_st": ("rope", True),
    "b2_7b_bf16_bin_sharded": ("rope", True),
    "b2_13b_f16_st_sharded": ("alibi", True),
    "b1_13b_f32_bin": ("alibi", False),
    "b1_7b_bf16_bin": ("rope", False),
    "b1_7b_f16_st": ("rope", False),
    "override_alibi": ("alibi", False),
    "kv_hd32": ("rope", True),
    "gen_rope": ("rope", True),
    "gen_alibi": ("alibi", True),
}

# ---------------------------------------------------------------------------
# A second loader (safetensors through torch.frombuffer; .bin through torch.load)
# ---------------------------------------------------------------------------


def torch_read_safetensors(path):
    with open(path, "rb") as fp:
        blob = bytearray(fp.read())
    hlen = struct.unpack_from("<Q", blob, 0)[0]
    header = json.loads(bytes(blob[8:8 + hlen]))
    base = 8 + hlen
    out = {}
    for name, info in header.items():
        if name == "__metadata__":
            continue
        dt = ST_TORCH[info["dtype"]]
        start, stop = info["data_offsets"]
        itemsize = torch.tensor([], dtype=dt).element_size()
        t = torch.frombuffer(blob, dtype=dt, offset=base + start, count=(stop - start) // itemsize)
        out[name] = t.reshape(info["shape"]).to(torch.float64).clone()
    return out


def torch_load_dir(d):
    files = sorted(os.listdir(d))
    out = {}
    for f in files:
        p = os.path.join(d, f)
        if f.endswith(".safetensors"):
            out.update(torch_read_safetensors(p))
        elif f.endswith(".bin"):
            sd = torch.load(p, map_location="cpu", weights_only=True)
            out.update({k: v.to(torch.float64) for k, v in sd.items()})
    return out


# ---------------------------------------------------------------------------
# A torch float64 model in the structure of the official modeling code
# ---------------------------------------------------------------------------


def rotate_half(x):
    x1 = x[..., : x.shape[-1] // 2]
    x2 = x[..., x.shape[-1] // 2:]
    return torch.cat((-x2, x1), dim=-1)


def rope_cache(dim, seq_len, base=10000.0):
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.float64) / dim))
    t = torch.arange(seq_len, dtype=torch.float64)
    freqs = torch.einsum("i,j->ij", t, inv_freq)
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos()[None, None, :, :], emb.sin()[None, None, :, :]  # (1, 1, T, D)


def interleave_slopes(n):
    # Written as a sequence: a geometric run of ratio 2^(-8/p) for the largest
    # power of two p <= n, then the in-between slopes of the 2p run.
    p = 2 ** math.floor(math.log2(n))
    start = 2.0 ** (-8.0 / p)
    slopes = [start * start ** i for i in range(p)]
    if p < n:
        start2 = 2.0 ** (-8.0 / (2 * p))
        slopes += [start2 * start2 ** i for i in range(0, 2 * p, 2)][: n - p]
    return torch.tensor(slopes, dtype=torch.float64)


def alibi_mask_13b(n_head, seq_len):
    """Baichuan-13B's mask: (H, T, T) = slope_h * key position + future mask."""
    slopes = interleave_slopes(n_head)
    alibi = slopes.unsqueeze(1).unsqueeze(1) * torch.arange(seq_len, dtype=torch.float64).unsqueeze(0).unsqueeze(
        0).expand(n_head, -1, -1)  # (H, 1, T)
    alibi = alibi.view(n_head, 1, seq_len)
    future = torch.triu(torch.full((seq_len, seq_len), float("-inf"), dtype=torch.float64), 1)
    return future.unsqueeze(0) + alibi  # (H, T, T)


def causal_mask(seq_len):
    return torch.triu(torch.full((seq_len, seq_len), float("-inf"), dtype=torch.float64), 1)[None, None]


def rms_norm_t(x, w, eps):
    variance = x.pow(2).mean(-1, keepdim=True)
    return w * (x * torch.rsqrt(variance + eps))


def torch_forward(W, hp, tokens, vocab_rows=None):
    ids = torch.tensor([tokens], dtype=torch.long)  # (1, T)
    bsz, q_len = ids.shape
    nh, hd = hp.n_head, hp.head_dim
    h = F.embedding(ids, W["model.embed_tokens.weight"])  # (1, T, C)
    if hp.pos_encoding == "rope":
        cos, sin = rope_cache(hd, q_len)
        mask = causal_mask(q_len)
    else:
        mask = alibi_mask_13b(nh, q_len).unsqueeze(0)  # (1, H, T, T)
    for i in range(hp.n_layer):
        p = "model.layers.%d." % i
        residual = h
        x = rms_norm_t(h, W[p + "input_layernorm.weight"], hp.eps)
        proj = F.linear(x, W[p + "self_attn.W_pack.weight"])
        qp, kp, vp = torch.chunk(proj, 3, dim=-1)
        q = qp.reshape(bsz, q_len, nh, hd).transpose(1, 2)  # (1, H, T, D)
        k = kp.reshape(bsz, q_len, nh, hd).transpose(1, 2)
        v = vp.reshape(bsz, q_len, nh, hd).transpose(1, 2)
        if hp.pos_encoding == "rope":
            q = q * cos + rotate_half(q) * sin
            k = k * cos + rotate_half(k) * sin
        attn = torch.matmul(q, k.transpose(2, 3)) / math.sqrt(hd) + mask
        attn = torch.softmax(attn, dim=-1)
        out = torch.matmul(attn, v).transpose(1, 2).reshape(bsz, q_len, hp.n_embd)
        h = residual + F.linear(out, W[p + "self_attn.o_proj.weight"])
        residual = h
        x = rms_norm_t(h, W[p + "post_attention_layernorm.weight"], hp.eps)
        mlp = F.linear(F.silu(F.linear(x, W[p + "mlp.gate_proj.weight"])) * F.linear(x, W[p + "mlp.up_proj.weight"]),
                       W[p + "mlp.down_proj.weight"])
        h = residual + mlp
    h = rms_norm_t(h, W["model.norm.weight"], hp.eps)
    head = W["lm_head.weight"][:vocab_rows]
    if hp.norm_head:
        head = F.normalize(head)
    return F.linear(h, head)[0].numpy()


# ---------------------------------------------------------------------------
# Checks
# ---------------------------------------------------------------------------

SUBSET_VOCAB = 8192  # lm_head rows kept where all of them are not needed: enough to see a change


def subset_model(hp, weights):
    """The reference model with only the first SUBSET_VOCAB rows of lm_head
    (NormHead is per row, so this is a slice of the full model's logits)."""
    m = reference.Model(hp, weights)
    m.lm_head = m.lm_head[:SUBSET_VOCAB]
    return m



def check_slopes(t):
    d = reference.alibi_slopes(40)
    want = [2.0 ** (-(h + 1) / 4.0) for h in range(32)] + [2.0 ** (-(2 * k + 1) / 8.0) for k in range(8)]
    t.record(np.allclose(d, want, rtol=0, atol=1e-15), "alibi slopes 40 heads match DESIGN.md's closed form")
    want6 = [2.0 ** -2, 2.0 ** -4, 2.0 ** -6, 2.0 ** -8, 2.0 ** -1, 2.0 ** -3]
    t.record(np.allclose(reference.alibi_slopes(6), want6, rtol=0, atol=1e-15), "alibi slopes 6 heads")
    ok = all(np.allclose(reference.alibi_slopes(n), interleave_slopes(n).numpy(), rtol=1e-14, atol=0)
             for n in range(1, 97))
    t.record(ok, "alibi slopes 1..96 heads agree between the two formulations")


def check_fixture(t, fx, d):
    name = fx["name"]
    master = gen_fixtures.generate_weights(fx)
    ref_w = reference.load_tensors(d)
    alt_w = torch_load_dir(d)

    # Weights: both loaders see exactly the master weights rounded to the stored dtype.
    worst = 0.0
    names_ok = sorted(ref_w) == sorted(master) == sorted(alt_w)
    for n, m in master.items():
        want = torch.from_numpy(m).to(TORCH_DTYPE[gen_fixtures.stored_dtype(fx, n)]).to(torch.float64).numpy()
        if n in ref_w and n in alt_w:
            worst = max(worst, float(np.max(np.abs(ref_w[n] - want))), float(np.max(np.abs(alt_w[n].numpy() - want))))
    t.record(names_ok and worst == 0.0, "%s weights: %d tensors, max diff vs master %.3g" % (name, len(master), worst))

    # Variant detection.
    hp = reference.read_hparams(d)
    got = (hp.pos_encoding, hp.norm_head)
    t.record(got == EXPECTED_VARIANT[name], "%s variant detected %s, expected %s" % (name, got, EXPECTED_VARIANT[name]))

    # The short sequence over the whole vocabulary, the long one over the
    # first SUBSET_VOCAB rows of lm_head (float64 torch matmuls are slow).
    model, sub = reference.Model(hp, ref_w), subset_model(hp, ref_w)
    for length in SEQ_LENGTHS:
        tokens = token_sequence(name, length, hp.n_vocab)
        short = length == SEQ_LENGTHS[0]
        ref = (model if short else sub).logits(tokens)
        alt = torch_forward(alt_w, hp, tokens, vocab_rows=None if short else SUBSET_VOCAB)
        err = rel_err(ref, alt)
        t.record(err <= 1e-11, "%s n_tokens=%d n_vocab=%d reference vs torch-style err %.3g"
                 % (name, length, ref.shape[1], err))
        if not short:
            long_ref, long_tokens = ref, tokens

    # Overrides, both ways, against the torch model with the same settings
    # (over the first SUBSET_VOCAB rows of lm_head, to save time).
    tokens = token_sequence(name, 24, hp.n_vocab)
    base = subset_model(hp, ref_w).logits(tokens)
    for pe, nhd in (("alibi" if hp.pos_encoding == "rope" else "rope", None), (None, not hp.norm_head)):
        hp2 = reference.read_hparams(d, pe, nhd)
        ref = subset_model(hp2, ref_w).logits(tokens)
        alt = torch_forward(alt_w, hp2, tokens, vocab_rows=SUBSET_VOCAB)
        err = rel_err(ref, alt)
        change = rel_err(ref, base)
        t.record(err <= 1e-11 and change > 0.05,
                 "%s override pos=%s norm_head=%s: err %.3g, differs from default by %.3g"
                 % (name, hp2.pos_encoding, hp2.norm_head, err, change))

    # Causality and dependence on the past.
    causal = rel_err(sub.logits(long_tokens[:5]), long_ref[:5])
    changed = list(long_tokens)
    changed[0] = (changed[0] + 1) % hp.n_vocab
    dep = rel_err(sub.logits(changed)[-1], long_ref[-1])
    t.record(causal <= 1e-12 and dep > 1e-3,
             "%s causal (prefix err %.3g) and last logits depend on token 0 (change %.3g)" % (name, causal, dep))

    # Well conditioned: logits spread, softmax neither flat nor one-hot.
    std = float(np.std(long_ref))
    z = long_ref - long_ref.max(axis=1, keepdims=True)
    p = np.exp(z)
    p /= p.sum(axis=1, keepdims=True)
    top = float(np.median(p.max(axis=1)))
    t.record(0.3 < std < 20 and 1e-4 < top < 0.9, "%s logit std %.3g, median top probability %.3g" % (name, std, top))

    check_sensitivity(t, fx, hp, ref_w)


# ---------------------------------------------------------------------------
# Sensitivity: mistakes an engine could make must show in the logits
# ---------------------------------------------------------------------------

MUTATION_TOKENS = 64


def rope_interleaved_pairs(x, positions, theta=reference.ROPE_THETA):
    # The layout Baichuan does NOT use: element 2i pairs with 2i + 1.
    d = x.shape[-1]
    angle = np.asarray(positions, dtype=np.float64)[:, None] * reference.rope_inv_freq(d, theta)[None, :]
    c, s = np.cos(angle)[:, None, :], np.sin(angle)[:, None, :]
    even, odd = x[..., 0::2], x[..., 1::2]
    out = np.empty_like(x)
    out[..., 0::2] = even * c - odd * s
    out[..., 1::2] = odd * c + even * s
    return out


def slopes_odd_interleave(n):
    # The extra heads taking the odd instead of the even entries of the 2p run.
    p = 1 << (n.bit_length() - 1)
    base = slopes_plain_geometric(p)
    if p == n:
        return base
    run = [2.0 ** (-8.0 * (h + 1) / (2 * p)) for h in range(2 * p)]
    return np.concatenate([base, run[1::2][: n - p]])


def slopes_plain_geometric(n):
    return np.array([2.0 ** (-8.0 * (h + 1) / n) for h in range(n)])


def check_sensitivity(t, fx, hp, W):
    name = fx["name"]
    e, nh, hd = hp.n_embd, hp.n_head, hp.head_dim
    tokens = token_sequence(name, MUTATION_TOKENS, hp.n_vocab)

    def logits(weights):
        return subset_model(hp, weights).logits(tokens)

    base = logits(W)

    def edit(fn):
        W2 = dict(W)
        for i in range(hp.n_layer):
            fn(W2, "model.layers.%d." % i)
        return lambda: logits(W2)

    def patched(attr, fn):
        def run():
            saved = getattr(reference, attr)
            setattr(reference, attr, fn)
            try:
                return logits(W)
            finally:
                setattr(reference, attr, saved)
        return run

    def q_over_sqrt_hd(W2, p):
        w = W2[p + "self_attn.W_pack.weight"].copy()
        w[:e] /= math.sqrt(hd)  # scores scaled by 1/head_dim instead of 1/sqrt(head_dim)
        W2[p + "self_attn.W_pack.weight"] = w

    def heads_transposed(W2, p):
        perm = np.arange(e).reshape(nh, hd).T.reshape(-1)
        w = W2[p + "self_attn.W_pack.weight"]
        W2[p + "self_attn.W_pack.weight"] = np.concatenate([w[b * e:(b + 1) * e][perm] for b in range(3)])

    def gate_up_swapped(W2, p):
        g, u = p + "mlp.gate_proj.weight", p + "mlp.up_proj.weight"
        W2[g], W2[u] = W2[u], W2[g]

    def norm_weights_ignored(W2, p):
        for n in (p + "input_layernorm.weight", p + "post_attention_layernorm.weight"):
            W2[n] = np.ones_like(W2[n])

    mutations = [("scale 1/head_dim", edit(q_over_sqrt_hd)),
                 ("heads transposed in W_pack", edit(heads_transposed)),
                 ("gate/up swapped", edit(gate_up_swapped)),
                 ("layer norm weights ignored", edit(norm_weights_ignored))]
    if hp.pos_encoding == "rope":
        mutations.append(("RoPE interleaved pairs", patched("apply_rope", rope_interleaved_pairs)))
    elif nh & (nh - 1):
        mutations.append(("ALiBi odd-interleave slopes", patched("alibi_slopes", slopes_odd_interleave)))
        mutations.append(("ALiBi plain geometric slopes", patched("alibi_slopes", slopes_plain_geometric)))
    need = 2 * tolerance(name)
    for label, run in mutations:
        change = rel_err(run(), base)
        t.record(change > need, "%s sensitivity to '%s': %.3g (need > %.3g)" % (name, label, change, need))


def main(argv=None):
    ap = argparse.ArgumentParser(description="self-check of tools/reference.py")
    ap.add_argument("--fixtures", help="fixture directory (generated if missing; default: a temporary one)")
    ap.add_argument("--bin", help="ignored (accepted so that ctest can pass it as to the other scripts)")
    args = ap.parse_args(argv)
    torch.set_num_threads(max(1, min(4, os.cpu_count() or 1)))
    tmp = None
    if args.fixtures:
        fixtures = args.fixtures
    else:
        tmp = fixtures = tempfile.mkdtemp(prefix="bc_selfcheck_")
    t = Tally()
    try:
        bc_testlib.ensure_fixtures(fixtures)
        check_slopes(t)
        for fx in gen_fixtures.FIXTURES.values():
            check_fixture(t, fx, os.path.join(fixtures, fx["name"]))
    finally:
        if tmp:
            shutil.rmtree(tmp, ignore_errors=True)
    return t.finish()


if __name__ == "__main__":
    sys.exit(main())
