"""repmatch's layer-grid engine against the CKA libraries users would pick instead, same data, one run.

Peers (each used if it imports; ``pip install -e .[peers]``, or ``pip install --no-deps`` them
next to the pinned torch): ``pytorch-cka`` (module ``cka``: ``cka_from_features``, debiased CKA
only, clipped to [0, 1]), ``ckatorch`` (``cka_base``, one pair per call, linear and debiased),
``torch-cka`` (module ``torch_cka``: models + dataloaders only, debiased; fed here by modules that
return the cached features), ``repsim`` (``repsim.cka``, C++; estimator ``gretton`` = linear CKA,
``song`` = debiased). A peer that does not import is reported and skipped.

Grids (model a layers x model b layers, float32 activations as stored):
  * synthetic n = 5,000 rows, 10 layers per model, widths 64-512, without and with a +1000 offset;
  * flattened conv-like maps: 500 rows x (16x28x28, 32x14x14, 32x14x14, 64x7x7, 64x7x7, 64) features
    (12,544 features for the first: far more features than rows);
  * with ``--cache DIR`` (a results/activations folder): the first two models' cached activations,
    pooled (global average) and flattened.

Per library and measure: wall time (median of ``--repeats`` in this run; for the per-pair peers,
pairs are computed in a fixed random order until ``--budget`` seconds are spent and the grid time
is extrapolated from the mean time per pair: the table says from how many pairs), peak memory
(RSS above the level at the call's start, sampled every 2 ms), max |error| against a float64
reference written here from the textbook formulas (centred float64 features; explicit n x n
Gram matrices when n <= 2,000), and the number of NaN cells.

    python benchmarks/bench_peers.py --quick          # < 1 min on 2 cores (n = 600; 250-row flattened maps)
    python benchmarks/bench_peers.py                  # the sizes above (several minutes)
    python benchmarks/bench_peers.py --cache results/activations
    python benchmarks/bench_peers.py --families       # only the neighbourhood / RSA section (< 1 min)

Neighbourhood and RSA families (``--families``, also run after the CKA grids): one 6 x 6 grid of
pooled-conv-like layers (n = 500, the default probe set), repmatch's grid against
``rsatoolbox`` (RSA: correlation RDMs compared by Spearman, Pearson and tau-a; Euclidean RDMs,
which rsatoolbox squares and divides by the width, by Spearman and tau-a, which only see the
order) and against ReSi's recipe for k-NN sets (scikit-learn ``NearestNeighbors`` with the
cosine metric, k + 1 neighbours minus the sample itself) for ``mutual_knn`` and ``jaccard_knn``.
netrep (shape metrics) and the Platonic-representation alignment code are not on PyPI, so the
shape metrics have no peer here (tests/test_similarity_families.py checks them against a
netrep-style reference and the existing Procrustes / CCA).
"""

from __future__ import annotations

import argparse
import os


from _common import early_threads, synthetic_layers  # noqa: E402  (before numpy/torch: sets their thread count)

THREADS = early_threads()

import threading  # noqa: E402
import time  # noqa: E402
import warnings  # noqa: E402
from collections.abc import Callable  # noqa: E402
from dataclasses import dataclass, field  # noqa: E402
from importlib import metadata  # noqa: E402
from pathlib import Path  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from repmatch.similarity import similarity_grids  # noqa: E402

Layers = dict[str, np.ndarray]
MEASURES = ("linear_cka", "debiased_cka")
FLAT_SHAPES = [(16, 28, 28), (32, 14, 14), (32, 14, 14), (64, 7, 7), (64, 7, 7), (64,)]


# --- data ------------------------------------------------------------------------------------------


def synthetic(n: int, widths: list[int], offset: float, seed: int = 0) -> tuple[Layers, Layers]:
    """Two 'networks' of float32 (n, d) layers: a shared random signal through random ReLU maps, + offset."""
    return synthetic_layers(n, widths, offset, seed)


def flattened(n: int, seed: int = 1) -> tuple[Layers, Layers]:
    """Conv-like maps of a small CNN, flattened: ReLU of a shared low-dimensional signal, spatially smooth."""
    rng = np.random.default_rng(seed)
    z = rng.standard_normal((n, 48)).astype(np.float32)
    models = []
    for _ in range(2):
        layers = {}
        for k, shape in enumerate(FLAT_SHAPES):
            d = int(np.prod(shape))
            w = rng.standard_normal((48, d)).astype(np.float32) / np.sqrt(48)
            h = np.maximum(z @ w + 0.3 * rng.standard_normal((n, d)).astype(np.float32), 0)
            layers[f"conv{k + 1}" if len(shape) == 3 else "fc1"] = h.astype(np.float32)
        models.append(layers)
    return models[0], models[1]


def cached(folder: Path) -> list[tuple[str, Layers, Layers]]:
    """Pooled and flattened grids from the first two model folders of a results/activations folder."""
    models = sorted(p for p in folder.iterdir() if p.is_dir() and list(p.glob("*.npy")))[:2]
    if len(models) < 2:
        raise SystemExit(f"--cache {folder}: need two model folders with .npy activations")
    acts = [{p.stem: np.load(p) for p in sorted(m.glob("*.npy"))} for m in models]
    pooled = [{k: (v.mean(axis=(2, 3)) if v.ndim == 4 else v).astype(np.float32) for k, v in a.items()} for a in acts]
    flat = [{k: v.reshape(v.shape[0], -1) for k, v in a.items()} for a in acts]
    tag = f"{models[0].name} x {models[1].name}"
    return [(f"cached pooled ({tag})", *pooled), (f"cached flattened ({tag})", *flat)]


# --- float64 reference, written from the formulas ----------------------------------------------------


def _hsic1_from_gram(k: np.ndarray, l: np.ndarray) -> float:
    """Song et al. (2012) unbiased HSIC from explicit n x n kernels (diagonals zeroed)."""
    n = k.shape[0]
    k, l = k.copy(), l.copy()
    np.fill_diagonal(k, 0)
    np.fill_diagonal(l, 0)
    ku, lu = k.sum(axis=1), l.sum(axis=1)
    return float((np.sum(k * l) + ku.sum() * lu.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * ku @ lu) / (n * (n - 3)))


def _hsic1_from_features(x: np.ndarray, y: np.ndarray) -> float:
    """The same estimator without forming K = X X^T: tr(K~L~) = ||X^T Y||^2 - a.b, K~1 = X (X^T 1) - a."""
    n = x.shape[0]
    a, b = np.einsum("ij,ij->i", x, x), np.einsum("ij,ij->i", y, y)
    ku, lu = x @ x.sum(axis=0) - a, y @ y.sum(axis=0) - b
    tr = np.sum((x.T @ y) ** 2) - a @ b
    return float((tr + ku.sum() * lu.sum() / ((n - 1) * (n - 2)) - 2 / (n - 2) * ku @ lu) / (n * (n - 3)))


def reference(a: Layers, b: Layers) -> dict[str, np.ndarray]:
    """Linear and debiased CKA of every pair in float64 from the centred features."""
    n = next(iter(a.values())).shape[0]
    ca = [np.asarray(v, dtype=np.float64) - np.asarray(v, dtype=np.float64).mean(axis=0) for v in a.values()]
    cb = [np.asarray(v, dtype=np.float64) - np.asarray(v, dtype=np.float64).mean(axis=0) for v in b.values()]
    out = {m: np.zeros((len(ca), len(cb))) for m in MEASURES}
    if n <= 2000:
        ka, kb = [x @ x.T for x in ca], [y @ y.T for y in cb]
        sa, sb = [_hsic1_from_gram(k, k) for k in ka], [_hsic1_from_gram(k, k) for k in kb]
        for i, k in enumerate(ka):
            for j, l in enumerate(kb):
                out["linear_cka"][i, j] = np.sum(k * l) / np.sqrt(np.sum(k * k) * np.sum(l * l))
                out["debiased_cka"][i, j] = _hsic1_from_gram(k, l) / np.sqrt(sa[i] * sb[j])
    else:
        sq = [np.sum((x.T @ x) ** 2) for x in ca], [np.sum((y.T @ y) ** 2) for y in cb]
        sa, sb = [_hsic1_from_features(x, x) for x in ca], [_hsic1_from_features(y, y) for y in cb]
        for i, x in enumerate(ca):
            for j, y in enumerate(cb):
                out["linear_cka"][i, j] = np.sum((x.T @ y) ** 2) / np.sqrt(sq[0][i] * sq[1][j])
                out["debiased_cka"][i, j] = _hsic1_from_features(x, y) / np.sqrt(sa[i] * sb[j])
        # (x.T @ y is formed twice per pair; at n = 5,000 and widths <= 512 that is a few seconds.)
    return out


# --- measuring -----------------------------------------------------------------------------------------


def _rss() -> int:
    try:
        import psutil

        return int(psutil.Process().memory_info().rss)
    except ImportError:  # pragma: no cover - psutil is in the peers extra
        return 0


def measured(fn: Callable[[], object]) -> tuple[float, float, object]:
    """(seconds, peak RSS above the start in MB, result) of one call; RSS sampled every 2 ms."""
    base = _rss()
    peak = [base]
    done = threading.Event()

    def sample() -> None:
        while not done.is_set():
            peak[0] = max(peak[0], _rss())
            time.sleep(0.002)

    th = threading.Thread(target=sample, daemon=True)
    th.start()
    t0 = time.perf_counter()
    try:
        out = fn()
    finally:
        dt = time.perf_counter() - t0
        done.set()
        th.join()
    peak[0] = max(peak[0], _rss())
    return dt, (peak[0] - base) / 2**20, out


@dataclass
class Row:
    grid: str
    library: str
    measure: str
    seconds: float = float("nan")
    peak_mb: float = float("nan")
    max_err: float = float("nan")
    nans: int = 0
    cells: int = 0
    note: str = ""
    values: np.ndarray | None = field(default=None, repr=False)


# --- the libraries ---------------------------------------------------------------------------------------


def run_repmatch(a: Layers, b: Layers, measure: str) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return similarity_grids(a, b, [measure])[0][measure]


def run_repmatch_f32(a: Layers, b: Layers, measure: str) -> np.ndarray:
    """repmatch's opt-in float32 precision (centring still before any product, two passes)."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return similarity_grids(a, b, [measure], dtype="float32")[0][measure]


def run_repmatch_qr_route(a: Layers, b: Layers, measure: str) -> np.ndarray:
    """Baseline: linear CKA as the engine computed it before the wide-layer Gram route -- each wide layer (d > n)
    reduced to n columns by a float64 QR of Xc^T, then feature-space cross products of the factors."""
    from repmatch.similarity.linalg import cross_sq_grid

    def factor(v: np.ndarray) -> torch.Tensor:
        x = torch.from_numpy(v).to(torch.float64)
        xc = x - x.mean(dim=0, keepdim=True)
        return xc if xc.shape[1] <= xc.shape[0] else torch.linalg.qr(xc.T, mode="r").R.T.contiguous()

    fa, fb = [factor(v) for v in a.values()], [factor(v) for v in b.values()]
    cross = cross_sq_grid(fa, fb)
    na = torch.stack([torch.linalg.matrix_norm(f.T @ f) for f in fa])
    nb = torch.stack([torch.linalg.matrix_norm(f.T @ f) for f in fb])
    return (cross / (na[:, None] * nb[None, :])).numpy()


def _pytorch_cka(a: Layers, b: Layers, measure: str) -> np.ndarray:
    import cka

    return cka.cka_from_features([torch.from_numpy(v) for v in a.values()], [torch.from_numpy(v) for v in b.values()]).double().numpy()


def _ckatorch_pair(x: np.ndarray, y: np.ndarray, measure: str) -> float:
    import ckatorch

    return float(ckatorch.cka_base(torch.from_numpy(x), torch.from_numpy(y), kernel="linear", unbiased=measure == "debiased_cka"))


class _Take(torch.nn.Module):
    """A 'layer' that returns the stored features of the rows it is given (so torch-cka can hook it)."""

    def __init__(self, feat: torch.Tensor) -> None:
        super().__init__()
        self.feat = feat

    def forward(self, idx: torch.Tensor) -> torch.Tensor:
        return self.feat[idx]


def _torch_cka_pair(x: np.ndarray, y: np.ndarray, measure: str) -> float:
    from torch.utils.data import DataLoader, TensorDataset
    from torch_cka import CKA

    m1, m2 = torch.nn.Sequential(_Take(torch.from_numpy(x))), torch.nn.Sequential(_Take(torch.from_numpy(y)))
    loader = DataLoader(TensorDataset(torch.arange(x.shape[0])), batch_size=x.shape[0])  # one batch: the whole probe set
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        c = CKA(m1, m2, model1_name="a", model2_name="b", model1_layers=["0"], model2_layers=["0"], device="cpu")
        try:
            c.compare(loader)
        except AssertionError:  # "HSIC computation resulted in NANs"
            return float("nan")
    return float(c.export()["CKA"][0, 0])


def _repsim_pair(x: np.ndarray, y: np.ndarray, measure: str) -> float:
    import repsim

    return float(repsim.cka([x, y], "linear", "song" if measure == "debiased_cka" else "gretton")[0, 1])


#: name -> (import name, distribution, measures, grid function or None, pair function or None)
PEERS: dict[str, tuple[str, str, tuple[str, ...], Callable | None, Callable | None]] = {
    "pytorch-cka": ("cka", "pytorch-cka", ("debiased_cka",), _pytorch_cka, None),
    "ckatorch": ("ckatorch", "ckatorch", MEASURES, None, _ckatorch_pair),
    "torch-cka": ("torch_cka", "torch-cka", ("debiased_cka",), None, _torch_cka_pair),
    "repsim": ("repsim", "repsim", MEASURES, None, _repsim_pair),
}


def available_peers() -> tuple[dict[str, str], dict[str, str]]:
    """(name -> version of the peers that import, name -> why the others are skipped)."""
    ok, skipped = {}, {}
    for name, (module, dist, *_rest) in PEERS.items():
        try:
            __import__(module)
            ok[name] = metadata.version(dist)
        except Exception as exc:  # noqa: BLE001 - any import failure means "skip and say why"
            skipped[name] = f"{type(exc).__name__}: {exc}"
    return ok, skipped


#: Above this many rows a per-pair peer is first timed on row subsets (SUB_ROWS and 2 * SUB_ROWS rows).
SUB_ROWS = 500


def per_pair(a: Layers, b: Layers, ref: dict[str, np.ndarray], measure: str, pair_fn: Callable, order: np.ndarray,
             budget: float) -> tuple[np.ndarray, np.ndarray, float, float, str]:
    """Pairs one call each, in a fixed random order, until ``budget`` seconds are spent; the grid
    time is extrapolated from the mean time per pair. When n > 2 * SUB_ROWS and one full-size pair
    would exceed the budget (predicted from the same pair on SUB_ROWS and 2 * SUB_ROWS rows, with
    the measured exponent p of t ~ n^p), pairs are computed on the first 2 * SUB_ROWS rows, the time
    is scaled by (n / 2 SUB_ROWS)^p, and the errors are against the reference on those rows."""
    names_a, names_b = list(a), list(b)
    n = next(iter(a.values())).shape[0]
    note, scale = "one pair per call", 1.0
    rows = slice(None)
    if n > 2 * SUB_ROWS:
        i, j = divmod(int(order[0]), len(names_b))
        t1 = measured(lambda: pair_fn(a[names_a[i]][:SUB_ROWS], b[names_b[j]][:SUB_ROWS], measure))[0]
        t2 = measured(lambda: pair_fn(a[names_a[i]][: 2 * SUB_ROWS], b[names_b[j]][: 2 * SUB_ROWS], measure))[0]
        p = float(np.clip(np.log2(t2 / t1), 1.0, 3.0))
        if t2 * (n / (2 * SUB_ROWS)) ** p > budget:
            rows, scale = slice(0, 2 * SUB_ROWS), (n / (2 * SUB_ROWS)) ** p
            note += f"; on {2 * SUB_ROWS} of {n} rows, time x (n/{2 * SUB_ROWS})^{p:.2f} (exponent measured)"
            sub_a, sub_b = {k: v[rows] for k, v in a.items()}, {k: v[rows] for k, v in b.items()}
            ref[measure] = reference(sub_a, sub_b)[measure]  # errors against the reference on the same rows
            a, b = sub_a, sub_b
    vals = np.full((len(names_a), len(names_b)), np.nan)
    done = np.zeros_like(vals, dtype=bool)
    spent, peak = 0.0, 0.0
    for flat in order:
        i, j = divmod(int(flat), len(names_b))
        dt, mb, v = measured(lambda: pair_fn(a[names_a[i]], b[names_b[j]], measure))
        vals[i, j], done[i, j] = v, True
        spent, peak = spent + dt, max(peak, mb)
        if spent > budget:
            break
    k, total = int(done.sum()), done.size
    if k < total:
        note += f"; extrapolated from {k}/{total} pairs"
    return vals, done, spent / k * total * scale, peak, note


def bench_grid(title: str, a: Layers, b: Layers, peers: list[str], repeats: int, budget: float) -> list[Row]:
    full_ref = reference(a, b)
    rows: list[Row] = []
    names_a, names_b = list(a), list(b)
    order = np.random.default_rng(0).permutation(len(names_a) * len(names_b))
    for measure in MEASURES:
        jobs: list[tuple[str, Callable | None, Callable | None]] = [("repmatch", run_repmatch, None)]
        n = next(iter(a.values())).shape[0]
        if any(v.shape[1] > n for v in [*a.values(), *b.values()]):
            jobs.append(("repmatch, float32 precision", run_repmatch_f32, None))
            if measure == "linear_cka":
                jobs.append(("repmatch, QR route (before #18)", run_repmatch_qr_route, None))
        jobs += [(p, PEERS[p][3], PEERS[p][4]) for p in peers if measure in PEERS[p][2]]
        for lib, grid_fn, pair_fn in jobs:
            row = Row(title, lib, measure)
            ref = dict(full_ref)
            done = np.ones((len(names_a), len(names_b)), dtype=bool)
            try:
                if grid_fn is not None:
                    runs = [measured(lambda: grid_fn(a, b, measure)) for _ in range(repeats)]
                    row.seconds = float(np.median([r[0] for r in runs]))
                    row.peak_mb = max(r[1] for r in runs)
                    row.values = np.asarray(runs[-1][2], dtype=np.float64)
                    row.note = f"median of {repeats}"
                else:
                    vals, done, row.seconds, row.peak_mb, row.note = per_pair(a, b, ref, measure, pair_fn, order, budget)
                    row.values = vals
                computed = done if grid_fn is None else np.ones_like(row.values, dtype=bool)
                row.cells = int(computed.sum())
                row.nans = int(np.isnan(row.values[computed]).sum())
                finite = computed & np.isfinite(row.values)
                row.max_err = float(np.max(np.abs(row.values[finite] - ref[measure][finite]))) if finite.any() else float("nan")
            except Exception as exc:  # noqa: BLE001 - a peer crashing is a result, not a benchmark failure
                row.note = f"failed: {type(exc).__name__}: {str(exc)[:60]}"
            rows.append(row)
            print(f"  {title} | {lib} | {measure}: {row.seconds:.3g} s, err {row.max_err:.1e}, NaN {row.nans} {row.note}", flush=True)
    return rows


def table(rows: list[Row]) -> str:
    head = "| grid | library | measure | time (s) | x repmatch | peak RSS (MB) | max error | NaN cells | note |"
    lines = [head, "|" + "---|" * 9]
    base = {(r.grid, r.measure): r.seconds for r in rows if r.library == "repmatch"}
    for r in rows:
        ratio = r.seconds / base[(r.grid, r.measure)] if (r.grid, r.measure) in base else float("nan")
        nan = f"{r.nans}/{r.cells}" if r.cells else "-"
        lines.append(f"| {r.grid} | {r.library} | {r.measure} | {r.seconds:.3g} | {ratio:.3g} | {r.peak_mb:.0f} | {r.max_err:.1e} | {nan} | {r.note} |")
    return "\n".join(lines)


#: "Exact": max error against the float64 reference at the rounding level of float64 arithmetic.
EXACT = 1e-12


def verdicts(rows: list[Row]) -> list[str]:
    """Per grid and measure: is repmatch the fastest and the most accurate?"""
    out = []
    for key in dict.fromkeys((r.grid, r.measure) for r in rows):
        group = [r for r in rows if (r.grid, r.measure) == key and np.isfinite(r.seconds)]
        rep = next(r for r in group if r.library == "repmatch")
        peers = [r for r in group if not r.library.startswith("repmatch")]
        faster = [r.library for r in peers if r.seconds < rep.seconds]
        exact = "exact" if rep.max_err <= EXACT else "NOT exact"
        inexact = [r.library for r in peers if not r.max_err <= EXACT or r.nans]
        out.append(f"{key[0]} / {key[1]}: repmatch {'fastest' if not faster else 'slower than ' + ', '.join(faster)}; "
                   f"{exact} (max error {rep.max_err:.1e}); peers off by more than {EXACT:.0e} or NaN: {', '.join(inexact) or 'none'}")
    return out


# --- neighbourhood and RSA families ---------------------------------------------------------------


FAMILY_WIDTHS = [16, 32, 32, 64, 64, 64]  # the default small CNN's layers after global average pooling


def _rsatoolbox_grid(a: Layers, b: Layers, rdm: str, compare: str) -> np.ndarray:
    import rsatoolbox

    method = {"correlation": "correlation", "euclidean": "euclidean"}[rdm]
    ra = rsatoolbox.rdm.calc_rdm([rsatoolbox.data.Dataset(v.astype(np.float64)) for v in a.values()], method=method)
    rb = rsatoolbox.rdm.calc_rdm([rsatoolbox.data.Dataset(v.astype(np.float64)) for v in b.values()], method=method)
    return np.asarray(rsatoolbox.rdm.compare(ra, rb, method={"spearman": "spearman", "pearson": "corr", "kendall_tau_a": "tau-a"}[compare]))


def _sklearn_knn_grid(a: Layers, b: Layers, measure: str, k: int = 10) -> np.ndarray:
    """ReSi's recipe: NearestNeighbors(k + 1, metric='cosine'), the first neighbour (the sample itself) dropped."""
    from sklearn.neighbors import NearestNeighbors

    def lists(v: np.ndarray) -> list[set[int]]:
        idx = NearestNeighbors(n_neighbors=k + 1, metric="cosine").fit(v).kneighbors(v)[1][:, 1:]
        return [set(r) for r in idx]

    la, lb = [lists(v) for v in a.values()], [lists(v) for v in b.values()]
    out = np.zeros((len(la), len(lb)))
    for i, sa in enumerate(la):
        for j, sb in enumerate(lb):
            inter = [len(p & q) for p, q in zip(sa, sb)]
            out[i, j] = np.mean([c / k for c in inter]) if measure == "mutual_knn" else np.mean([c / (2 * k - c) for c in inter])
    return out


def bench_families(n: int, repeats: int) -> list[str]:
    """repmatch vs rsatoolbox (RSA) and vs ReSi's scikit-learn recipe (k-NN sets): max |difference| and times."""
    a, b = synthetic(n, FAMILY_WIDTHS, 0.0, seed=3)
    cases: list[tuple[str, dict[str, object], Callable[[], np.ndarray], str]] = []
    for rdm, compare in (("correlation", "spearman"), ("correlation", "pearson"), ("correlation", "kendall_tau_a"),
                         ("euclidean", "spearman"), ("euclidean", "kendall_tau_a")):
        cases.append(("rsa", {"rsa_rdm": rdm, "rsa_compare": compare},
                      lambda rdm=rdm, compare=compare: _rsatoolbox_grid(a, b, rdm, compare), f"rsatoolbox {metadata.version('rsatoolbox')}"))
    for m in ("mutual_knn", "jaccard_knn"):
        cases.append((m, {"knn_k": 10, "knn_distance": "cosine"}, lambda m=m: _sklearn_knn_grid(a, b, m),
                      f"scikit-learn {metadata.version('scikit-learn')} NearestNeighbors (ReSi recipe)"))
    lines = [f"families: n={n}, 6x6 layers (widths {FAMILY_WIDTHS}), float32 activations", "",
             "| measure | parameters | peer | repmatch (s) | peer (s) | peer / repmatch | max abs difference |", "|" + "---|" * 7]
    for measure, params, peer_fn, peer in cases:
        try:
            mine = [measured(lambda: similarity_grids(a, b, [measure], params=params)[0][measure]) for _ in range(repeats)]
            theirs = [measured(peer_fn) for _ in range(repeats)]
        except ImportError as exc:
            lines.append(f"| {measure} | {params} | {peer}: skipped ({exc}) | | | | |")
            continue
        t_mine, t_peer = float(np.median([r[0] for r in mine])), float(np.median([r[0] for r in theirs]))
        diff = float(np.max(np.abs(np.asarray(mine[-1][2]) - np.asarray(theirs[-1][2]))))
        pars = ", ".join(f"{k}={v}" for k, v in params.items())
        lines.append(f"| {measure} | {pars} | {peer} | {t_mine:.3g} | {t_peer:.3g} | {t_peer / t_mine:.3g} | {diff:.1e} |")
        print(lines[-1], flush=True)
    return lines


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--quick", action="store_true", help="small sizes: under a minute on 2 cores")
    ap.add_argument("--cache", type=Path, default=None, help="a results/activations folder: also benchmark real cached activations")
    ap.add_argument("--repeats", type=int, default=None, help="timed calls per grid library (default 3, quick 2)")
    ap.add_argument("--budget", type=float, default=None, help="seconds per per-pair peer and grid before extrapolating (default 20, quick 2)")
    ap.add_argument("--threads", type=int, default=1, help="BLAS/torch threads (0: library default)")
    ap.add_argument("--peers", default=",".join(PEERS), help="comma-separated subset of " + ", ".join(PEERS))
    ap.add_argument("--families", action="store_true", help="only the neighbourhood / RSA section against its peers")
    args = ap.parse_args()
    if THREADS > 0:
        torch.set_num_threads(THREADS)
    repeats = args.repeats or (2 if args.quick else 3)
    budget = args.budget if args.budget is not None else (1.0 if args.quick else 20.0)
    ok, skipped = available_peers()
    peers = [p for p in args.peers.split(",") if p in ok]
    print(f"torch {torch.__version__}, numpy {np.__version__}, threads {torch.get_num_threads()}, cpu count {os.cpu_count()}")
    print("peers: " + ", ".join(f"{p} {v}" for p, v in ok.items()) if ok else "peers: none importable")
    for p, why in skipped.items():
        print(f"skipped {p}: {why}")

    if args.families:
        print("\n".join(bench_families(500, repeats)))
        return
    n_syn, widths = (600, [32, 32, 64, 64, 128, 128, 128, 256, 256, 256]) if args.quick else (5000, [64, 64, 128, 128, 256, 256, 256, 512, 512, 512])
    n_flat = 250 if args.quick else 500
    grids: list[tuple[str, Layers, Layers]] = [
        (f"synthetic n={n_syn}, 10x10", *synthetic(n_syn, widths, 0.0)),
        (f"synthetic n={n_syn}, 10x10, +1000", *synthetic(n_syn, widths, 1000.0)),
        (f"flattened n={n_flat}, 6x6 (d up to 12,544)", *flattened(n_flat)),
    ]
    if args.cache is not None:
        grids += cached(args.cache)
    rows: list[Row] = []
    t_start = time.perf_counter()
    for title, a, b in grids:
        print(f"{title}:", flush=True)
        rows += bench_grid(title, a, b, peers, repeats, budget)
    print()
    print(table(rows))
    print()
    for line in verdicts(rows):
        print(line)
    print()
    print("\n".join(bench_families(500, repeats)))
    print(f"total {time.perf_counter() - t_start:.0f} s")


if __name__ == "__main__":
    main()
