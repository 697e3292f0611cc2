#!/usr/bin/python3
"""Parity fixture for the GPT variant of SPEC.md section 2 (minGPT), made with PyTorch.

Run:  apt-get install -y python3-torch && /usr/bin/python3 tools/make_gpt_fixture.py
(Debian's python3; Debian has no python3-safetensors, so the format is written
by hand as in tools/make_fixtures.py.)

The model is written below as torch modules with minGPT's module tree, so
its state_dict() has minGPT's keys, buffers included: a tiny GPT, L2 H2 d32
ff 4d, vocab 405, block 2*9+1 = 19, for 3x3 matrices. Weights are random
(larger than minGPT's init so that every path matters; LayerNorm weights 1 +
noise). Everything is computed in float64 from the float32 weights; results
are cast to float32. Both attention kinds run on the same weights: "softmax"
(minGPT) and "linear" (the reference's model_linear.py: scores scaled by
1/sqrt(hs), causal entries set to 0, no softmax).

Writes (deterministic, seed 4321):

test/fixtures/gpt_tiny.safetensors
  __metadata__: only "format": "pt" (a converted minGPT state_dict: no
  abrupt.config, so the loader infers the config; heads = 2 must be given)
  the state_dict, float32, minGPT names (PyTorch [out, in] shapes):
    transformer.wte.weight [405,32], transformer.wpe.weight [19,32]
    transformer.h.{0,1}.ln_1.weight|bias [32]
    transformer.h.{l}.attn.bias [1,1,19,19]     the causal-mask buffer (ones on and below the diagonal)
    transformer.h.{l}.attn.c_attn.weight [96,32], .bias [96]   (q; k; v)
    transformer.h.{l}.attn.c_proj.weight [32,32], .bias [32]
    transformer.h.{l}.ln_2.weight|bias [32]
    transformer.h.{l}.mlp.c_fc.weight [128,32], .bias [128]
    transformer.h.{l}.mlp.c_proj.weight [32,128], .bias [32]
    transformer.ln_f.weight|bias [32], lm_head.weight [405,32]
  grad.<kind>.<name>  F32, for kind softmax and linear and every parameter:
                      d loss / d <name> on the fixture batch (below).
test/fixtures/gpt_tiny.json
  config      {"vocab":405,"block":19,"L":2,"H":2,"d":32,"ff":128,"lnEps":1e-5}
  B, T        2, 18
  inputs      [B*T] token ids: two sequences [masked X (9), SEP 404, X (9)] less the last token
  targets     [B*T] the sequences less the first token
  prompts     [4*10] [masked X, SEP] of four sequences (the batch's two, then two more)
  softmax, linear: {
    logits        [B*T*405] of the model on inputs (row-major [B,T,V])
    loss          mean next-token cross-entropy over all B*T positions
    completions   [4*9] greedy (argmax) continuation of each prompt, 9 tokens,
                  grown one token at a time as minGPT's generate(do_sample=False)
    min_gap       the smallest gap between the two largest logits over all
                  generation steps (float64): the completions are robust to
                  float32 rounding when this is far above 1e-4
  }
"""

import json
import math
import os
import struct
import sys

import torch
import torch.nn as nn
import torch.nn.functional as F

CFG = {"vocab": 405, "block": 19, "L": 2, "H": 2, "d": 32, "ff": 128, "lnEps": 1e-5}
M = N = 3
CELLS = M * N
SEP = 404
B = 2
N_PROMPTS = 4
RANK, P_MASK = 2, 0.3
SEED = 4321

OUT_DIR = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures")


def gelu_tanh(x):
    return 0.5 * x * (1.0 + torch.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * torch.pow(x, 3.0))))


class CausalSelfAttention(nn.Module):
    def __init__(self, linear):
        super().__init__()
        C, blk = CFG["d"], CFG["block"]
        self.c_attn = nn.Linear(C, 3 * C)
        self.c_proj = nn.Linear(C, C)
        self.register_buffer("bias", torch.tril(torch.ones(blk, blk)).view(1, 1, blk, blk))
        self.linear = linear

    def forward(self, x):
        Bn, Tn, C = x.shape
        H = CFG["H"]
        q, k, v = self.c_attn(x).split(C, dim=2)
        q, k, v = (t.view(Bn, Tn, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hs)
        att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
        causal = self.bias[:, :, :Tn, :Tn] == 0
        if self.linear:
            att = att.masked_fill(causal, 0.0)
        else:
            att = F.softmax(att.masked_fill(causal, float("-inf")), dim=-1)
        y = (att @ v).transpose(1, 2).contiguous().view(Bn, Tn, C)
        return self.c_proj(y)


class Block(nn.Module):
    def __init__(self, linear):
        super().__init__()
        C = CFG["d"]
        self.ln_1 = nn.LayerNorm(C, eps=CFG["lnEps"])
        self.attn = CausalSelfAttention(linear)
        self.ln_2 = nn.LayerNorm(C, eps=CFG["lnEps"])
        self.mlp = nn.ModuleDict(dict(c_fc=nn.Linear(C, CFG["ff"]), c_proj=nn.Linear(CFG["ff"], C)))

    def forward(self, x):
        x = x + self.attn(self.ln_1(x))
        return x + self.mlp.c_proj(gelu_tanh(self.mlp.c_fc(self.ln_2(x))))


class GPT(nn.Module):
    def __init__(self, linear=False):
        super().__init__()
        C = CFG["d"]
        self.transformer = nn.ModuleDict(dict(
            wte=nn.Embedding(CFG["vocab"], C),
            wpe=nn.Embedding(CFG["block"], C),
            h=nn.ModuleList([Block(linear) for _ in range(CFG["L"])]),
            ln_f=nn.LayerNorm(C, eps=CFG["lnEps"]),
        ))
        self.lm_head = nn.Linear(C, CFG["vocab"], bias=False)

    def forward(self, idx):
        t = idx.size(1)
        assert t <= CFG["block"]
        x = self.transformer.wte(idx) + self.transformer.wpe(torch.arange(t).unsqueeze(0))
        for block in self.transformer.h:
            x = block(x)
        return self.lm_head(self.transformer.ln_f(x))


def random_weights(model, g):
    """float32 weights, in place: N(0, std) with std by kind of tensor, LayerNorm 1 + noise."""
    with torch.no_grad():
        for name, p in model.named_parameters():
            if ".ln_" in name:
                std, base = (0.2, 1.0) if name.endswith("weight") else (0.1, 0.0)
            elif name.endswith("bias"):
                std, base = 0.1, 0.0
            elif "wte" in name or "wpe" in name:
                std, base = 0.5, 0.0
            else:
                std, base = 1.0 / math.sqrt(p.shape[1]), 0.0
            p.copy_(base + std * torch.randn(p.shape, generator=g, dtype=torch.float32))


def sample_sequences(g, count):
    """[masked X, SEP, X] for count random rank-2 3x3 matrices (every matrix has a hidden and an observed cell)."""
    U = torch.rand(count, M, RANK, generator=g, dtype=torch.float64) * 2 - 1
    V = torch.rand(count, N, RANK, generator=g, dtype=torch.float64) * 2 - 1
    X = torch.round((U @ V.transpose(1, 2)) * 100) / 100
    tok = (1 + torch.round(X.reshape(count, CELLS) * 100) + 200).to(torch.int64)
    hidden = torch.rand(count, CELLS, generator=g) < P_MASK
    for b in range(count):
        hidden[b, b % CELLS] = True
        hidden[b, CELLS - 1 - b % CELLS] = False
    return torch.cat([tok.masked_fill(hidden, 0), torch.full((count, 1), SEP), tok], dim=1)


def greedy(model, prompts, steps):
    """minGPT's generate(do_sample=False): append the argmax token, one at a time; also the smallest top-2 gap."""
    idx, gap = prompts, float("inf")
    with torch.no_grad():
        for _ in range(steps):
            logits = model(idx)[:, -1, :]
            top = torch.topk(logits, 2, dim=-1).values
            gap = min(gap, (top[:, 0] - top[:, 1]).min().item())
            idx = torch.cat([idx, logits.argmax(dim=-1, keepdim=True)], dim=1)
    return idx[:, prompts.size(1):], gap


DTYPES = {torch.float32: ("F32", "<f4"), torch.int64: ("I64", "<i8")}


def write_safetensors(path, tensors, meta):
    """Minimal writer (as tools/make_fixtures.py): header JSON padded with spaces to 8 bytes; atomic."""
    header, blobs, at = {"__metadata__": meta}, [], 0
    for name, t in tensors.items():
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


def floats(t):
    return [float(f"{x:.8g}") for x in t.reshape(-1).tolist()]


def main():
    torch.set_num_threads(2)
    g = torch.Generator().manual_seed(SEED)
    base = GPT()
    random_weights(base, g)
    state = base.state_dict()  # float32, minGPT's keys (attn.bias buffers included)
    seqs = sample_sequences(g, N_PROMPTS)
    inputs, targets = seqs[:B, :-1], seqs[:B, 1:]
    prompts = seqs[:, : CELLS + 1]

    out = {
        "generator": f"tools/make_gpt_fixture.py: minGPT module tree in plain torch, float64, torch {torch.__version__}, seed {SEED}",
        "config": CFG, "B": B, "T": inputs.size(1),
        "inputs": inputs.reshape(-1).tolist(), "targets": targets.reshape(-1).tolist(),
        "prompts": prompts.reshape(-1).tolist(),
    }
    tensors = dict(state)
    for kind in ("softmax", "linear"):
        model = GPT(linear=kind == "linear")
        model.load_state_dict(state, strict=True)
        model = model.double()
        logits = model(inputs)
        loss = F.cross_entropy(logits.reshape(-1, CFG["vocab"]), targets.reshape(-1))
        loss.backward()
        completions, gap = greedy(model, prompts, CELLS)
        m32 = GPT(linear=kind == "linear")
        m32.load_state_dict(state, strict=True)
        with torch.no_grad():
            diff = (m32(inputs).double() - logits).abs().max().item()
        print(f"{kind}: loss {loss.item():.10g}; max |logit| {logits.abs().max().item():.3g}; "
              f"float32 vs float64 logits {diff:.3g}; smallest top-2 gap in generation {gap:.3g}")
        assert gap > 1e-3, f"{kind}: a near tie in generation ({gap}); choose another seed"
        out[kind] = {
            "logits": floats(logits.detach().to(torch.float32)),
            "loss": loss.item(),
            "completions": completions.reshape(-1).tolist(),
            "min_gap": gap,
        }
        for name, p in model.named_parameters():
            tensors[f"grad.{kind}.{name}"] = p.grad.to(torch.float32)

    os.makedirs(OUT_DIR, exist_ok=True)
    st = os.path.join(OUT_DIR, "gpt_tiny.safetensors")
    write_safetensors(st, tensors, {"format": "pt"})
    js = os.path.join(OUT_DIR, "gpt_tiny.json")
    tmp = f"{js}.tmp-{os.getpid()}"
    with open(tmp, "w") as f:
        json.dump(out, f, separators=(",", ":"))
        f.write("\n")
    os.replace(tmp, js)
    for f in (st, js):
        print(f"wrote {os.path.relpath(f)} ({os.path.getsize(f)} bytes)")


if __name__ == "__main__":
    sys.exit(main())
