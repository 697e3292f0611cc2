#!/usr/bin/python3
"""Parity fixtures for the BERT of SPEC.md section 2, made with PyTorch.

Run:  apt-get install -y python3-torch && /usr/bin/python3 tools/make_fixtures.py
(Debian's python3, not a pyenv/venv one without torch.)
(Debian has no python3-transformers, so HF BertModel's forward is written
here in plain torch, op for op in HF's order; Debian has no
python3-safetensors either, so the format is written by hand below.)

The computation runs in float64 from float32 weights (so the stored float32
weights are exactly the ones used); results are cast to float32. The same
computation in float32 is run for information and its max difference from
float64 is printed.

Writes (deterministic, seed 1234):

test/fixtures/bert_tiny.safetensors
  __metadata__:
    "abrupt.config"  JSON ModelConfig {"vocab":2002,"positions":64,"L":2,"H":2,
                     "d":16,"ff":32,"lnEps":1e-12}
    "format"         "pt"
    "fixture.B", "fixture.T"   "3", "25"
    "fixture.generator"        how it was made
  weights, float32, the paper's PyTorch names (HF BertModel under "_backbone."):
    _backbone.embeddings.word_embeddings.weight        [2002,16]  row 0 (MASK) zero
    _backbone.embeddings.position_embeddings.weight    [64,16]    64 > T on purpose
    _backbone.embeddings.token_type_embeddings.weight  [2,16]     row 0 NON-zero: our
                                                       loader folds it into positions
    _backbone.embeddings.LayerNorm.weight|bias         [16]
    _backbone.encoder.layer.{0,1}.attention.self.{query,key,value}.weight [16,16], .bias [16]
    _backbone.encoder.layer.{l}.attention.output.dense.weight [16,16], .bias [16]
    _backbone.encoder.layer.{l}.attention.output.LayerNorm.weight|bias [16]
    _backbone.encoder.layer.{l}.intermediate.dense.weight [32,16], .bias [32]
    _backbone.encoder.layer.{l}.output.dense.weight [16,32], .bias [16]
    _backbone.encoder.layer.{l}.output.LayerNorm.weight|bias [16]
    read_out.weight [1,16], read_out.bias [1]
    (LayerNorm weights are 1 + noise, biases noise: all non-trivial.)
  the batch (a 5x5 rank-2 matrix per row, SPEC section 1 tokenisation, p_mask 0.3):
    fixture.tokens   I64 [3,25]  token ids, 0 = MASK (every row has some)
    fixture.targets  F32 [3,25]  X rounded to 2 decimals (the regression target)
  results of the forward in float64, cast to float32:
    fixture.outputs  F32 [3,25]  read_out of the last hidden state, squeezed
    fixture.loss     F32 [1]     mean over all 75 entries of (outputs - targets)^2
    grad.<name>      F32         d loss / d <name> for every weight above, same shape.
                     grad.*.word_embeddings.weight row 0 is zero (padding_idx 0).
                     grad.*.position_embeddings.weight rows >= 25 are zero.
                     grad.*.token_type_embeddings.weight: row 0 = sum over rows
                     0..24 of the position gradient, row 1 zero; our layout has no
                     such tensor (the gradient of our folded position table equals
                     grad.*.position_embeddings.weight).

test/fixtures/bert_tiny_noconfig.safetensors
  the same weights with NO "abrupt.config" metadata (only "format": "pt"), to
  test config inference (load it with heads=2), plus tensors the loader must
  tolerate and ignore: _backbone.embeddings.position_ids I64 [1,64] (an HF
  buffer) and _backbone.pooler.dense.weight [16,16] / .bias [16].
"""

import json
import math
import os
import struct
import sys

import torch
import torch.nn.functional as F

CFG = {"vocab": 2002, "positions": 64, "L": 2, "H": 2, "d": 16, "ff": 32, "lnEps": 1e-12}
B, M, N = 3, 5, 5  # batch, matrix rows, columns
T = M * N
RANK, P_MASK = 2, 0.3
SEED = 1234

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures")


def make_weights(g):
    """Random float32 weights in the paper's names (HF BertModel under _backbone.)."""
    V, P, C, FF = CFG["vocab"], CFG["positions"], CFG["d"], CFG["ff"]

    def randn(*shape, std):
        return torch.randn(*shape, generator=g, dtype=torch.float32) * std

    w = {}
    e = "_backbone.embeddings."
    w[e + "word_embeddings.weight"] = randn(V, C, std=0.5)
    w[e + "word_embeddings.weight"][0].zero_()  # padding_idx=0: the MASK row starts at zero
    w[e + "position_embeddings.weight"] = randn(P, C, std=0.5)
    w[e + "token_type_embeddings.weight"] = randn(2, C, std=0.3)
    w[e + "LayerNorm.weight"] = 1 + randn(C, std=0.2)
    w[e + "LayerNorm.bias"] = randn(C, std=0.1)
    for l in range(CFG["L"]):
        h = f"_backbone.encoder.layer.{l}."
        for qkv in ("query", "key", "value"):
            w[h + f"attention.self.{qkv}.weight"] = randn(C, C, std=0.4)
            w[h + f"attention.self.{qkv}.bias"] = randn(C, std=0.1)
        w[h + "attention.output.dense.weight"] = randn(C, C, std=0.25)
        w[h + "attention.output.dense.bias"] = randn(C, std=0.1)
        w[h + "attention.output.LayerNorm.weight"] = 1 + randn(C, std=0.2)
        w[h + "attention.output.LayerNorm.bias"] = randn(C, std=0.1)
        w[h + "intermediate.dense.weight"] = randn(FF, C, std=0.25)
        w[h + "intermediate.dense.bias"] = randn(FF, std=0.1)
        w[h + "output.dense.weight"] = randn(C, FF, std=0.18)
        w[h + "output.dense.bias"] = randn(C, std=0.1)
        w[h + "output.LayerNorm.weight"] = 1 + randn(C, std=0.2)
        w[h + "output.LayerNorm.bias"] = randn(C, std=0.1)
    w["read_out.weight"] = randn(1, C, std=0.3)
    w["read_out.bias"] = randn(1, std=0.1)
    return w


def make_batch(g):
    """Rank-2 5x5 matrices, rounded targets and SPEC section 1 tokens with MASK = 0."""
    U = torch.rand(B, M, RANK, generator=g, dtype=torch.float64) * 2 - 1
    Vf = torch.rand(B, N, RANK, generator=g, dtype=torch.float64) * 2 - 1
    X = torch.round((U @ Vf.transpose(1, 2)) * 100) / 100  # round to 2 decimals
    targets = X.reshape(B, T)
    tokens = 1 + torch.round((targets + 10) * 100).to(torch.int64)
    hidden = torch.rand(B, T, generator=g) < P_MASK
    for b in range(B):  # every row has at least one MASK and one observed value
        hidden[b, b] = True
        hidden[b, T - 1 - b] = False
    tokens[hidden] = 0
    return tokens, targets.to(torch.float32)


def bert_forward(w, tokens):
    """HF BertModel (eval, no dropout, attention mask all ones) + read_out, in the dtype of w."""
    C, H, eps = CFG["d"], CFG["H"], CFG["lnEps"]
    hs = C // H
    p = w
    Bn, Tn = tokens.shape
    e = "_backbone.embeddings."
    # BertEmbeddings: inputs_embeds + token_type_embeddings, then += position_embeddings, LayerNorm
    inputs_embeds = F.embedding(tokens, p[e + "word_embeddings.weight"], padding_idx=0)
    token_type_ids = torch.zeros_like(tokens)
    x = inputs_embeds + F.embedding(token_type_ids, p[e + "token_type_embeddings.weight"])
    position_ids = torch.arange(Tn).unsqueeze(0)
    x = x + F.embedding(position_ids, p[e + "position_embeddings.weight"])
    x = F.layer_norm(x, (C,), p[e + "LayerNorm.weight"], p[e + "LayerNorm.bias"], eps)
    for l in range(CFG["L"]):
        h = f"_backbone.encoder.layer.{l}."

        def lin(name, inp):
            return F.linear(inp, p[h + name + ".weight"], p[h + name + ".bias"])

        def heads(t):  # (B,T,C) -> (B,H,T,hs)
            return t.view(Bn, Tn, H, hs).permute(0, 2, 1, 3)

        q = heads(lin("attention.self.query", x))
        k = heads(lin("attention.self.key", x))
        v = heads(lin("attention.self.value", x))
        scores = torch.matmul(q, k.transpose(-1, -2)) / math.sqrt(hs)
        probs = torch.softmax(scores, dim=-1)
        ctx = torch.matmul(probs, v).permute(0, 2, 1, 3).contiguous().view(Bn, Tn, C)
        a = F.layer_norm(lin("attention.output.dense", ctx) + x, (C,),
                         p[h + "attention.output.LayerNorm.weight"], p[h + "attention.output.LayerNorm.bias"], eps)
        inter = F.gelu(lin("intermediate.dense", a))  # exact (erf) GELU
        x = F.layer_norm(lin("output.dense", inter) + a, (C,),
                         p[h + "output.LayerNorm.weight"], p[h + "output.LayerNorm.bias"], eps)
    return F.linear(x, p["read_out.weight"], p["read_out.bias"]).squeeze(-1)  # (B,T)


def run(w, tokens, targets, dtype):
    # leaves in `dtype` itself, so the gradients are accumulated in `dtype` too
    leaves = {k: v.detach().to(dtype).clone().requires_grad_(True) for k, v in w.items()}
    outputs = bert_forward(leaves, tokens)
    loss = ((outputs - targets.to(dtype)) ** 2).mean()
    loss.backward()
    return outputs.detach(), loss.detach(), {k: v.grad for k, v in leaves.items()}


DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}


def write_safetensors(path, tensors, meta):
    """Minimal writer: header JSON padded with spaces to 8 bytes, data sorted by element size; atomic."""
    order = sorted(tensors.items(), key=lambda kv: -kv[1].element_size())  # stable: keeps insertion order
    header, blobs, at = {"__metadata__": meta}, [], 0
    for name, t in order:
        t = t.detach().contiguous().cpu()
        dt = DTYPES[t.dtype][0]
        raw = t.numpy().astype(DTYPES[t.dtype][1], copy=False).tobytes()
        header[name] = {"dtype": dt, "shape": list(t.shape), "data_offsets": [at, at + len(raw)]}
        blobs.append(raw)
        at += len(raw)
    hj = json.dumps(header, separators=(",", ":")).encode("utf-8")
    hj += b" " * ((8 - len(hj) % 8) % 8)
    tmp = f"{path}.tmp-{os.getpid()}"
    with open(tmp, "wb") as f:
        f.write(struct.pack("<Q", len(hj)))
        f.write(hj)
        for raw in blobs:
            f.write(raw)
    os.replace(tmp, path)


def main():
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(SEED)
    w = make_weights(g)
    tokens, targets = make_batch(g)

    out64, loss64, grads64 = run(w, tokens, targets, torch.float64)
    out32, loss32, grads32 = run(w, tokens, targets, torch.float32)
    print(f"torch {torch.__version__}; config {json.dumps(CFG)}; B={B} T={T}; "
          f"{int((tokens == 0).sum())} of {tokens.numel()} tokens are MASK")
    print(f"loss float64 {loss64.item():.10g}  float32 {loss32.item():.10g}")
    print(f"max |float32 - float64|: outputs {(out32 - out64).abs().max().item():.3g}, "
          f"loss {abs(loss32.item() - loss64.item()):.3g}, "
          f"grads {max((grads32[k] - grads64[k]).abs().max().item() for k in w):.3g} "
          f"(largest |grad| {max(grads64[k].abs().max().item() for k in w):.3g})")
    wte_grad = grads64["_backbone.embeddings.word_embeddings.weight"]
    assert wte_grad[0].abs().max().item() == 0, "MASK row of word_embeddings must get no gradient"

    meta = {
        "abrupt.config": json.dumps(CFG, separators=(",", ":")),
        "format": "pt",
        "fixture.B": str(B),
        "fixture.T": str(T),
        "fixture.generator": f"tools/make_fixtures.py: hand-written HF BertModel forward, float64, torch {torch.__version__}, seed {SEED}",
    }
    tensors = dict(w)
    tensors["fixture.tokens"] = tokens
    tensors["fixture.targets"] = targets
    tensors["fixture.outputs"] = out64.to(torch.float32)
    tensors["fixture.loss"] = loss64.to(torch.float32).reshape(1)
    for k in w:
        tensors["grad." + k] = grads64[k].to(torch.float32)
    os.makedirs(OUT_DIR, exist_ok=True)
    path = os.path.join(OUT_DIR, "bert_tiny.safetensors")
    write_safetensors(path, tensors, meta)

    nc = dict(w)
    nc["_backbone.embeddings.position_ids"] = torch.arange(CFG["positions"], dtype=torch.int64).unsqueeze(0)
    nc["_backbone.pooler.dense.weight"] = torch.randn(CFG["d"], CFG["d"], generator=g) * 0.1
    nc["_backbone.pooler.dense.bias"] = torch.zeros(CFG["d"])
    path_nc = os.path.join(OUT_DIR, "bert_tiny_noconfig.safetensors")
    write_safetensors(path_nc, nc, {"format": "pt"})
    for f in (path, path_nc):
        print(f"wrote {os.path.relpath(f)} ({os.path.getsize(f)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
