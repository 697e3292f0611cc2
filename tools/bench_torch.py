#!/usr/bin/env python3
"""The PyTorch peer of `abrupt bench`: the same training step, timed in PyTorch.

Run:  V/bin/python tools/bench_torch.py --size G --steps 5 --threads 2
      (V from tools/setup-torch.sh V: PyTorch 2.13; Debian's python3-torch 1.13 also runs it)
      python3 tools/bench_torch.py --list-sizes      (needs no torch)
      V/bin/python tools/bench_torch.py --check       (imports torch, prints its version)

`abrupt bench --torch V/bin/python` runs this script once per size and
measurement, passing the size's shape with --shape (the JSON of BENCH_SIZES
in src/train/bench.ts), so both sides time the same shapes.

The step, as ours (src/train/bench.ts):
  S, M, P  the BERT of SPEC §2: token (vocab 2002) + position (512) embedding,
           embedding LayerNorm (eps 1e-12), L post-LN layers of H-head
           bidirectional softmax attention and an exact-erf GELU MLP, a scalar
           read-out d -> 1 per cell; MSE over all m·n cells; Adam lr 1e-4.
           The outputs are copied out each step (ours: downloaded for the metrics).
  G        minGPT as in SPEC §2: token (405) + position (block 2·m·n+1)
           embedding, L pre-LN layers (LayerNorm eps 1e-5) of causal softmax
           attention written as minGPT writes it (masked_fill, softmax) and a
           tanh-GELU MLP, ln_f, lm_head without bias; next-token cross-entropy
           over the 2·m·n positions; Adam lr 1e-4. The per-position losses
           are copied out each step (ours: downloaded for the metrics).
A fresh random batch is drawn every step, as ours, but here with torch's own
generator on tensors (U, V ~ U[-1,1], rank 2, p_mask 0.3): the sampling's cost
is not the same as ours (our sampler runs in JavaScript, one cell at a time),
and it is inside the timed step on both sides.

One warm-up step, then --steps timed steps; prints one JSON line:
  {"size", "ms_per_step" (median), "ms_all", "steps", "threads", "torch", "python", "shape"}
"""

import argparse
import json
import math
import platform
import sys
import time

# the sizes of src/train/bench.ts BENCH_SIZES (test/bench-torch.test.ts checks they agree)
SIZES = {
    "S": {"L": 2, "H": 4, "d": 128, "ff": 512, "B": 128, "m": 7, "n": 7},
    "M": {"L": 4, "H": 8, "d": 256, "ff": 1024, "B": 256, "m": 7, "n": 7},
    "P": {"L": 4, "H": 8, "d": 768, "ff": 3072, "B": 256, "m": 7, "n": 7},
    "G": {"L": 2, "H": 2, "d": 256, "ff": 1024, "B": 256, "m": 7, "n": 7, "gpt": True},
}

BERT_VOCAB, BERT_POSITIONS = 2002, 512
GPT_VOCAB, SEP = 405, 404
RANK, P_MASK, PREC = 2, 0.3, 2


def build(torch, s):
    """The model (a torch.nn.Module) and a step function `step(opt) -> host tensor` for shape s."""
    nn, F = torch.nn, torch.nn.functional
    L, H, d, ff, B, m, n = (s[k] for k in ("L", "H", "d", "ff", "B", "m", "n"))
    cells = m * n

    def sample_x():
        # X = U Vᵀ, rounded; hidden cells with probability P_MASK
        U = torch.rand(B, m, RANK) * 2 - 1
        V = torch.rand(B, n, RANK) * 2 - 1
        X = torch.round(torch.bmm(U, V.transpose(1, 2)).reshape(B, cells) * 10**PREC) / 10**PREC
        hidden = torch.rand(B, cells) < P_MASK
        return X, hidden

    class Attention(nn.Module):
        def __init__(self, causal, block):
            super().__init__()
            self.qkv = nn.Linear(d, 3 * d)
            self.proj = nn.Linear(d, d)
            self.causal = causal
            if causal:
                self.register_buffer("bias", torch.tril(torch.ones(block, block)).view(1, 1, block, block))

        def forward(self, x):
            Bn, T, C = x.shape
            q, k, v = self.qkv(x).split(C, dim=2)
            q, k, v = (t.view(Bn, T, H, C // H).transpose(1, 2) for t in (q, k, v))  # (B, H, T, hs)
            att = (q @ k.transpose(-2, -1)) * (1.0 / math.sqrt(k.size(-1)))
            if self.causal:
                att = att.masked_fill(self.bias[:, :, :T, :T] == 0, float("-inf"))
            att = F.softmax(att, dim=-1)
            y = (att @ v).transpose(1, 2).contiguous().view(Bn, T, C)
            return self.proj(y)

    if not s.get("gpt"):
        class PostLN(nn.Module):  # HF BertLayer: x = LN(x + attn(x)); x = LN(x + W2 gelu(W1 x))
            def __init__(self):
                super().__init__()
                self.attn = Attention(False, 0)
                self.ln1 = nn.LayerNorm(d, eps=1e-12)
                self.fc1, self.fc2 = nn.Linear(d, ff), nn.Linear(ff, d)
                self.ln2 = nn.LayerNorm(d, eps=1e-12)

            def forward(self, x):
                x = self.ln1(x + self.attn(x))
                return self.ln2(x + self.fc2(F.gelu(self.fc1(x))))

        class Bert(nn.Module):
            def __init__(self):
                super().__init__()
                self.tok = nn.Embedding(BERT_VOCAB, d, padding_idx=0)
                self.pos = nn.Embedding(BERT_POSITIONS, d)
                self.ln = nn.LayerNorm(d, eps=1e-12)
                self.layers = nn.ModuleList(PostLN() for _ in range(L))
                self.read_out = nn.Linear(d, 1)
                self.register_buffer("positions", torch.arange(cells))

            def forward(self, tokens):
                x = self.ln(self.tok(tokens) + self.pos(self.positions))
                for layer in self.layers:
                    x = layer(x)
                return self.read_out(x).squeeze(-1)

        model = Bert()

        def step(opt):
            X, hidden = sample_x()
            tokens = torch.where(hidden, torch.zeros_like(X, dtype=torch.long), 1 + torch.round((X + 10) * 100).long())
            opt.zero_grad(set_to_none=True)
            out = model(tokens)
            loss = F.mse_loss(out, X)
            loss.backward()
            opt.step()
            return out.detach().clone()

        return model, step

    T = 2 * cells
    block = T + 1

    class PreLN(nn.Module):  # minGPT Block: x = x + attn(ln_1(x)); x = x + mlp(ln_2(x))
        def __init__(self):
            super().__init__()
            self.ln_1 = nn.LayerNorm(d, eps=1e-5)
            self.attn = Attention(True, block)
            self.ln_2 = nn.LayerNorm(d, eps=1e-5)
            self.c_fc, self.c_proj = nn.Linear(d, ff), nn.Linear(ff, d)

        def forward(self, x):
            x = x + self.attn(self.ln_1(x))
            return x + self.c_proj(F.gelu(self.c_fc(self.ln_2(x)), approximate="tanh"))  # = minGPT's NewGELU

    class Gpt(nn.Module):
        def __init__(self):
            super().__init__()
            self.wte = nn.Embedding(GPT_VOCAB, d)
            self.wpe = nn.Embedding(block, d)
            self.h = nn.ModuleList(PreLN() for _ in range(L))
            self.ln_f = nn.LayerNorm(d, eps=1e-5)
            self.lm_head = nn.Linear(d, GPT_VOCAB, bias=False)
            self.register_buffer("positions", torch.arange(T))

        def forward(self, idx):
            x = self.wte(idx) + self.wpe(self.positions)
            for blk in self.h:
                x = blk(x)
            return self.lm_head(self.ln_f(x))

    model = Gpt()

    def step(opt):
        X, hidden = sample_x()
        values = 1 + torch.round(100 * X).long() + 200
        seq = torch.cat([torch.where(hidden, torch.zeros_like(values), values), torch.full((B, 1), SEP, dtype=torch.long), values], dim=1)
        opt.zero_grad(set_to_none=True)
        logits = model(seq[:, :-1])
        rows = F.cross_entropy(logits.reshape(-1, GPT_VOCAB), seq[:, 1:].reshape(-1), reduction="none")
        loss = rows.mean()
        loss.backward()
        opt.step()
        return rows.detach().clone()

    return model, step


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--size", default="S", help="S, M, P or G (ignored with --shape, except as the label)")
    ap.add_argument("--shape", help='the size as JSON, e.g. {"L":2,"H":2,"d":256,"ff":1024,"B":256,"m":7,"n":7,"gpt":true}')
    ap.add_argument("--steps", type=int, default=5, help="timed steps (median reported)")
    ap.add_argument("--threads", type=int, default=2, help="torch.set_num_threads (0 = torch's default)")
    ap.add_argument("--list-sizes", action="store_true", help="print the sizes as JSON and exit (no torch needed)")
    ap.add_argument("--check", action="store_true", help='import torch, print {"torch", "python"} as JSON and exit')
    a = ap.parse_args()
    if a.list_sizes:
        print(json.dumps(SIZES))
        return
    if a.check:
        import torch

        print(json.dumps({"torch": torch.__version__, "python": platform.python_version()}))
        return
    if a.shape:
        s = json.loads(a.shape)
    elif a.size in SIZES:
        s = SIZES[a.size]
    else:
        sys.exit(f"bench_torch: unknown size {a.size!r} (sizes: {', '.join(SIZES)})")
    if a.steps < 1:
        sys.exit(f"bench_torch: --steps must be at least 1 (got {a.steps})")

    import torch

    if a.threads > 0:
        torch.set_num_threads(a.threads)
    torch.manual_seed(7)
    model, step = build(torch, s)
    opt = torch.optim.Adam(model.parameters(), lr=1e-4, betas=(0.9, 0.999), eps=1e-8)
    times = []
    for i in range(a.steps + 1):  # step 0 is the warm-up
        t0 = time.perf_counter()
        step(opt)
        if i > 0:
            times.append((time.perf_counter() - t0) * 1000)
    srt = sorted(times)
    print(json.dumps({
        "size": a.size,
        "ms_per_step": srt[len(srt) // 2],
        "ms_all": [round(t, 1) for t in times],
        "steps": a.steps,
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "python": platform.python_version(),
        "shape": s,
    }))


if __name__ == "__main__":
    main()
