#!/usr/bin/python3
"""Writes test/fixtures/nnm_cases.json: nuclear-norm minimisation problems
solved independently of src/analysis/nnm-solver.ts (different algorithms,
LAPACK's SVD through numpy), to high precision, for test/analysis-nnm.test.ts.

  exact:        min ||X||_*  s.t. X = M on observed cells
                Douglas-Rachford splitting of ||.||_* and the affine set
  regularised:  min 1/2 sum_obs (X - M)^2 + lam ||X||_*
                plain proximal gradient (ISTA, step 1, no momentum)

Each exact solution comes with a certified duality gap (a subgradient of the
nuclear norm supported on the observed cells, scaled to spectral norm 1) and
a flag `unique`: a second start from random values ends at the same X.

Run: /usr/bin/python3 tools/make_nnm_fixture.py   (needs python3-numpy)
"""
import json
import os

import numpy as np

CASES = [  # m, n, rank, p_mask
    (7, 7, 2, 0.30),
    (7, 7, 2, 0.50),
    (7, 7, 1, 0.40),
    (7, 7, 3, 0.20),
    (6, 8, 2, 0.30),
    (8, 5, 2, 0.35),
    (5, 5, 1, 0.60),
    (9, 7, 2, 0.45),
]
LAMBDAS = [0.01, 0.1, 0.5]


def svt(a, tau):
    u, s, vt = np.linalg.svd(a, full_matrices=False)
    s = np.maximum(s - tau, 0.0)
    return (u * s) @ vt


def nuc(a):
    return float(np.linalg.svd(a, compute_uv=False).sum())


def exact_nnm(m_obs, obs, z0=None, gamma=1.0, tol=1e-13, max_iter=400_000):
    """Douglas-Rachford: x = prox_{gamma ||.||_*}(z); y = P_affine(2x - z); z += y - x."""
    z = np.where(obs, m_obs, 0.0) if z0 is None else z0
    for it in range(1, max_iter + 1):
        x = svt(z, gamma)
        y = np.where(obs, m_obs, 2 * x - z)
        z = z + y - x
        if np.linalg.norm(y - x) <= tol:
            break
    x = svt(z, gamma)
    sol = np.where(obs, m_obs, x)  # feasible by construction
    g = np.where(obs, (z - x) / gamma, 0.0)  # (z - x)/gamma is in the subdifferential at x
    lower = float((g * m_obs)[obs].sum() / np.linalg.norm(g, 2))
    return sol, nuc(sol), lower, it


def ista(m_obs, obs, lam, x0=None, tol=1e-14, max_iter=2_000_000):
    x = np.where(obs, m_obs, 0.0) if x0 is None else x0
    for it in range(1, max_iter + 1):
        xn = svt(np.where(obs, m_obs, x), lam)
        done = np.linalg.norm(xn - x) <= tol * max(1.0, np.linalg.norm(xn))
        x = xn
        if done:
            break
    obj = 0.5 * float(((x - m_obs)[obs] ** 2).sum()) + lam * nuc(x)
    # optimality: P_obs(M - X) / lam is a subgradient of ||.||_* at X
    r = np.where(obs, m_obs - x, 0.0)
    kkt = max(np.linalg.norm(r, 2) / lam - 1.0, abs(float((r * x).sum()) / lam - nuc(x)))
    return x, nuc(x), obj, it, kkt


def main():
    rng = np.random.default_rng(20241029)
    cases = []
    for m, n, r, p in CASES:
        u = rng.uniform(-1, 1, (m, r))
        v = rng.uniform(-1, 1, (n, r))
        x_true = np.round(u @ v.T, 2)
        hidden = rng.uniform(size=(m, n)) < p
        obs = ~hidden
        sol, nn, lower, it = exact_nnm(x_true, obs)
        assert nn - lower <= 1e-9 * max(1.0, nn), (m, n, r, p, nn, lower)
        # a second start (random values at hidden cells): if it ends elsewhere,
        # the minimiser is not unique and only the nuclear norm can be compared
        sol2, nn2, _, _ = exact_nnm(x_true, obs, z0=np.where(obs, x_true, rng.uniform(-2, 2, (m, n))))
        assert abs(nn2 - nn) <= 1e-9 * max(1.0, nn)
        unique = bool(np.abs(sol2 - sol).max() <= 1e-6)
        reg = []
        for lam in LAMBDAS:
            xr, nr, obj, itr, kkt = ista(x_true, obs, lam)
            assert kkt <= 1e-8, (m, n, lam, kkt)
            xr2, _, obj2, _, _ = ista(x_true, obs, lam, x0=np.where(obs, x_true, rng.uniform(-2, 2, (m, n))))
            assert abs(obj2 - obj) <= 1e-12 * max(1.0, obj)
            reg.append({"lambda": lam, "X": xr.ravel().tolist(), "nuc": nr, "objective": obj, "iters": itr, "kkt": kkt,
                        "unique": bool(np.abs(xr2 - xr).max() <= 1e-6)})
        cases.append({
            "m": m, "n": n, "rank": r, "pMask": p,
            "M": x_true.ravel().tolist(),
            "hidden": hidden.ravel().astype(int).tolist(),
            "trueNuc": nuc(x_true),
            "nnm": {"X": sol.ravel().tolist(), "nuc": nn, "lower": lower, "iters": it, "unique": unique},
            "reg": reg,
        })
        print(f"{m}x{n} r={r} p={p}: hidden {int(hidden.sum())}, nuc {nn:.8f} (true {nuc(x_true):.6f}), gap {nn - lower:.1e}, DR iters {it}, unique {unique}; "
              + ", ".join(f"lam {c['lambda']}: ISTA {c['iters']} it{'' if c['unique'] else ' (not unique)'}" for c in reg))
    out = {
        "generator": "tools/make_nnm_fixture.py (numpy " + np.__version__ + "): Douglas-Rachford for the exact problem, ISTA for the regularised one",
        "cases": cases,
    }
    path = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "test", "fixtures", "nnm_cases.json")
    with open(path, "w") as f:  # one case per line
        f.write('{"generator": ' + json.dumps(out["generator"]) + ',\n "cases": [\n')
        f.write(",\n".join("  " + json.dumps(c) for c in cases))
        f.write("\n ]}\n")
    print("wrote", os.path.normpath(path))


if __name__ == "__main__":
    main()
