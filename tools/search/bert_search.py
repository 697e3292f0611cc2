#!/usr/bin/env python3
"""Search for a fast abrupt-learning configuration of BERT matrix completion.

Plain-torch re-implementation of HF BertModel semantics (SPEC §2):
token emb (padding_idx 0 = MASK, zero row, no grad) + learned position emb,
LayerNorm eps 1e-12, post-LN layers, exact-erf GELU, no dropout,
read-out Linear(d,1), init N(0,0.02) weights, zero biases.
Loss: MSE over all m*n entries (SPEC §3). Fresh batch every step.

Usage: python bert_search.py --m 5 --n 5 --rank 2 --d 128 --L 4 --H 8 --ff 512 \
          --batch 64 --lr 1e-3 --warmup 100 --seed 0 --max-seconds 480 --tag name
Run with PYTHONPATH containing a `filelock` stub for the PyTorch 2.13 wheel.
"""
import argparse, json, math, os, sys, time
import torch
import torch.nn as nn
import torch.nn.functional as F

VOCAB = 2002


class Layer(nn.Module):
    def __init__(self, d, H, ff):
        super().__init__()
        self.H = H
        self.q = nn.Linear(d, d); self.k = nn.Linear(d, d); self.v = nn.Linear(d, d)
        self.o = nn.Linear(d, d); self.ln1 = nn.LayerNorm(d, eps=1e-12)
        self.w1 = nn.Linear(d, ff); self.w2 = nn.Linear(ff, d); self.ln2 = nn.LayerNorm(d, eps=1e-12)

    def forward(self, x):
        B, T, d = x.shape
        hs = d // self.H
        def split(t):
            return t.view(B, T, self.H, hs).transpose(1, 2)
        q, k, v = split(self.q(x)), split(self.k(x)), split(self.v(x))
        att = torch.softmax(q @ k.transpose(-1, -2) / math.sqrt(hs), dim=-1)
        a = (att @ v).transpose(1, 2).reshape(B, T, d)
        x = self.ln1(x + self.o(a))
        x = self.ln2(x + self.w2(F.gelu(self.w1(x))))  # exact erf gelu
        return x


class Bert(nn.Module):
    def __init__(self, T, d, L, H, ff):
        super().__init__()
        self.tok = nn.Embedding(VOCAB, d, padding_idx=0)
        self.pos = nn.Embedding(T, d)
        self.ln = nn.LayerNorm(d, eps=1e-12)
        self.layers = nn.ModuleList([Layer(d, H, ff) for _ in range(L)])
        self.read_out = nn.Linear(d, 1)
        for mod in self.modules():
            if isinstance(mod, (nn.Linear, nn.Embedding)):
                nn.init.normal_(mod.weight, 0.0, 0.02)
                if isinstance(mod, nn.Linear):
                    nn.init.zeros_(mod.bias)
        with torch.no_grad():
            self.tok.weight[0].zero_()
        self.register_buffer("pid", torch.arange(T), persistent=False)

    def forward(self, ids):
        x = self.ln(self.tok(ids) + self.pos(self.pid))
        for l in self.layers:
            x = l(x)
        return self.read_out(x).squeeze(-1)


def batch(B, m, n, r, p, g):
    U = torch.rand(B, m, r, generator=g) * 2 - 1
    V = torch.rand(B, n, r, generator=g) * 2 - 1
    X = torch.round((U @ V.transpose(1, 2)) * 100) / 100
    X = X.reshape(B, m * n)
    hid = torch.rand(B, m * n, generator=g) < p
    ids = 1 + torch.round((X + 10) * 100).long()
    assert int(ids.min()) >= 1 and int(ids.max()) <= VOCAB - 1
    ids = ids.masked_fill(hid, 0)
    return ids, X, hid


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--m", type=int, default=5); ap.add_argument("--n", type=int, default=5)
    ap.add_argument("--rank", type=int, default=2); ap.add_argument("--p", type=float, default=0.3)
    ap.add_argument("--d", type=int, default=128); ap.add_argument("--L", type=int, default=4)
    ap.add_argument("--H", type=int, default=8); ap.add_argument("--ff", type=int, default=0)
    ap.add_argument("--batch", type=int, default=64); ap.add_argument("--lr", type=float, default=1e-3)
    ap.add_argument("--b1", type=float, default=0.9); ap.add_argument("--b2", type=float, default=0.999)
    ap.add_argument("--warmup", type=int, default=0); ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--threads", type=int, default=1); ap.add_argument("--max-steps", type=int, default=100000)
    ap.add_argument("--max-seconds", type=float, default=480); ap.add_argument("--tag", default="run")
    ap.add_argument("--outdir", default="/tmp/dropsearch"); ap.add_argument("--after-drop", type=int, default=0)
    a = ap.parse_args()
    ff = a.ff or 4 * a.d
    torch.set_num_threads(a.threads)
    torch.manual_seed(a.seed)
    g = torch.Generator().manual_seed(1000 + a.seed)
    T = a.m * a.n
    model = Bert(T, a.d, a.L, a.H, ff)
    opt = torch.optim.Adam(model.parameters(), lr=a.lr, betas=(a.b1, a.b2))
    copy = a.rank / 9.0
    os.makedirs(a.outdir, exist_ok=True)
    log = open(os.path.join(a.outdir, a.tag + ".csv"), "w")
    log.write("step,L,Lmask,Lobs,t\n")
    win = []; ma_hist = []
    plateau_start = plateau_end = None; in_band_run = 0; best_band_run = 0; cur_start = None
    drop_step = None; drop_time = None
    t0 = time.time(); step_times = []
    step = 0
    while step < a.max_steps:
        ts = time.time()
        lr = a.lr * min(1.0, (step + 1) / a.warmup) if a.warmup else a.lr
        for pg in opt.param_groups: pg["lr"] = lr
        ids, X, hid = batch(a.batch, a.m, a.n, a.rank, a.p, g)
        out = model(ids)
        se = (out - X) ** 2
        loss = se.mean()
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        with torch.no_grad():
            hf = hid.float(); nh = hf.sum().clamp_min(1)
            se = se.detach(); lm = float((se * hf).sum() / nh); lo = float((se * (1 - hf)).sum() / (hf.numel() - nh).clamp_min(1))
        L = float(loss.detach())
        el = time.time() - t0
        step_times.append(time.time() - ts)
        log.write(f"{step},{L:.5f},{lm:.5f},{lo:.5f},{el:.2f}\n")
        win.append(lm)
        if len(win) > 50: win.pop(0)
        ma = sum(win) / len(win)
        if len(win) == 50:
            if abs(ma - copy) <= 0.15 * copy:
                if cur_start is None: cur_start = step
                in_band_run = step - cur_start + 1
                if in_band_run > best_band_run:
                    best_band_run = in_band_run; plateau_start = cur_start; plateau_end = step
            else:
                cur_start = None
            if drop_step is None and ma < 0.2 * copy:
                drop_step = step; drop_time = el
        if step % 250 == 0:
            print(f"[{a.tag}] step {step} L {L:.4f} Lmask_ma {ma:.4f} ({ma/copy:.3f}x copy) Lobs {lo:.4f} t {el:.0f}s", flush=True)
        step += 1
        if drop_step is not None and step > drop_step + a.after_drop: break
        if el > a.max_seconds: break
    st = sorted(step_times[5:]) or step_times
    res = dict(tag=a.tag, m=a.m, n=a.n, rank=a.rank, p=a.p, d=a.d, L=a.L, H=a.H, ff=ff, batch=a.batch,
               lr=a.lr, b1=a.b1, b2=a.b2, warmup=a.warmup, seed=a.seed, threads=a.threads,
               ms_step_median=1000 * st[len(st) // 2], steps=step, wall=time.time() - t0,
               plateau_start=plateau_start, plateau_end=plateau_end, plateau_len=best_band_run,
               drop_step=drop_step, drop_time=drop_time, final_Lmask_ma=ma, copy=copy)
    print(json.dumps(res), flush=True)
    with open(os.path.join(a.outdir, "results.jsonl"), "a") as f:
        f.write(json.dumps(res) + "\n")


if __name__ == "__main__":
    main()
