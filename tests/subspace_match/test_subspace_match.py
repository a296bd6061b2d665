"""Maths of the neuron activation subspace match: maximum match, whole-layer ε, v-minimal and
simple matches, checked against properties, planted structure, a naive per-neuron lstsq
reference and brute-force enumeration of every match on tiny examples."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from repmatch.subspace_match import (
    chance_from_sweep,
    chance_level,
    coordinate_permutations,
    maximum_match,
    maximum_match_sweep,
    orthonormal_basis,
    relative_residuals,
    simple_matches,
    v_minimal_match,
    whole_layer_epsilon,
)

# ---------------------------------------------------------------- naive references (numpy)


def naive_dist(z: np.ndarray, y: np.ndarray) -> float:
    """Relative residual of z to span(columns of y) by least squares (the reference's way)."""
    if y.shape[1] == 0:
        return 1.0
    coef, *_ = np.linalg.lstsq(y, z, rcond=None)
    return float(np.linalg.norm(y @ coef - z) / np.linalg.norm(z))


def naive_max_match(x: np.ndarray, y: np.ndarray, eps: float, ix=None, iy=None) -> tuple[list[int], list[int]]:
    """One neuron at a time, alternate sides until nothing changes (dead neurons dropped)."""
    ix = [i for i in (range(x.shape[1]) if ix is None else ix) if np.linalg.norm(x[:, i]) > 0]
    iy = [j for j in (range(y.shape[1]) if iy is None else iy) if np.linalg.norm(y[:, j]) > 0]
    while True:
        nx = [i for i in ix if naive_dist(x[:, i], y[:, iy]) <= eps]
        ny = [j for j in iy if naive_dist(y[:, j], x[:, nx]) <= eps]
        if nx == ix and ny == iy:
            return ix, iy
        ix, iy = nx, ny


def naive_v_minimal(x, y, eps, side, v):
    """The authors' greedy loop, one deletion at a time, each followed by a full recomputation."""
    ix, iy = naive_max_match(x, y, eps)
    if v not in (ix if side == "a" else iy):
        return None
    cands = [("a", i) for i in ix if not (side == "a" and i == v)] + [("b", j) for j in iy if not (side == "b" and j == v)]
    for s, u in cands:
        tx = [i for i in ix if not (s == "a" and i == u)]
        ty = [j for j in iy if not (s == "b" and j == u)]
        mx, my = naive_max_match(x, y, eps, tx, ty)
        if v in (mx if side == "a" else my):
            ix, iy = tx, ty
    return tuple(ix), tuple(iy)


def brute_force(x: np.ndarray, y: np.ndarray, eps: float):
    """Every (S, T) pair of subsets as a bitmask over (A neurons, then B neurons): is it a match,
    and is it simple (not the union of strictly smaller matches)?"""
    na, nb = x.shape[1], y.shape[1]
    n = na + nb
    bad_x = np.zeros(1 << nb, dtype=np.int64)  # for each B subset T: A neurons farther than ε
    for t in range(1 << nb):
        cols = [j for j in range(nb) if t >> j & 1]
        for i in range(na):
            if naive_dist(x[:, i], y[:, cols]) > eps:
                bad_x[t] |= 1 << i
    bad_y = np.zeros(1 << na, dtype=np.int64)
    for s in range(1 << na):
        cols = [i for i in range(na) if s >> i & 1]
        for j in range(nb):
            if naive_dist(y[:, j], x[:, cols]) > eps:
                bad_y[s] |= 1 << j
    masks = np.arange(1 << n, dtype=np.int64)
    s_part, t_part = masks & ((1 << na) - 1), masks >> na
    is_match = ((s_part & bad_x[t_part]) == 0) & ((t_part & bad_y[s_part]) == 0)
    is_match[0] = False  # the empty pair says nothing
    # union of all matches inside each mask (sum-over-subsets), then of the strictly smaller ones
    inside = np.where(is_match, masks, 0)
    for i in range(n):
        has = (masks >> i) & 1 == 1
        inside[has] |= inside[masks[has] ^ (1 << i)]
    strictly = np.zeros_like(inside)
    for i in range(n):
        has = (masks >> i) & 1 == 1
        strictly[has] |= inside[masks[has] ^ (1 << i)]
    return is_match, is_match & (strictly != masks)


def to_mask(a, b, na: int) -> int:
    return sum(1 << int(i) for i in a) + sum(1 << (na + int(j)) for j in b)


def submasks(mask: int):
    sub = mask
    while sub:
        yield sub
        sub = (sub - 1) & mask


# ---------------------------------------------------------------- planted data


def planted_tiny(seed: int = 0, noise: float = 0.01):
    """8 + 8 neurons in D = 16: a 1-D shared direction (x0, y0), a 2-D shared plane
    ({x1, x2} vs {y1, y2}, different mixes), a 3-D shared space ({x3, x4, x5} vs {y3, y4, y5})
    and unrelated neurons x6, x7, y6, y7. Simple matches at ε = 0.15: the three blocks."""
    rng = np.random.default_rng(seed)
    d = 16
    u = np.linalg.qr(rng.normal(size=(d, 6)))[0]
    x = np.empty((d, 8))
    y = np.empty((d, 8))
    x[:, 0], y[:, 0] = u[:, 0], -2.0 * u[:, 0]
    x[:, 1:3] = u[:, 1:3] @ rng.normal(size=(2, 2))
    y[:, 1:3] = u[:, 1:3] @ rng.normal(size=(2, 2))
    x[:, 3:6] = u[:, 3:6] @ rng.normal(size=(3, 3))
    y[:, 3:6] = u[:, 3:6] @ rng.normal(size=(3, 3))
    x[:, 6:] = rng.normal(size=(d, 2))
    y[:, 6:] = rng.normal(size=(d, 2))
    x += noise * np.linalg.norm(x, axis=0) * rng.normal(size=x.shape) / np.sqrt(d)
    y += noise * np.linalg.norm(y, axis=0) * rng.normal(size=y.shape) / np.sqrt(d)
    return x, y


def well_conditioned_mix(rng: np.random.Generator, k: int, n: int) -> np.ndarray:
    """A k × n (n ≥ k) matrix of full rank k with singular values in [0.5, 2]: an invertible
    mix whose inverse does not blow the noise up."""
    left = np.linalg.qr(rng.normal(size=(k, k)))[0]
    right = np.linalg.qr(rng.normal(size=(n, k)))[0].T
    return left @ np.diag(rng.uniform(0.5, 2.0, size=k)) @ right


def mixed_subspace(d: int = 400, k: int = 8, n_a: int = 8, n_b: int = 10, noise: float = 0.02, seed: int = 0):
    """Both layers span the same k-dim subspace through known invertible mixes, plus noise."""
    rng = np.random.default_rng(seed)
    u = np.linalg.qr(rng.normal(size=(d, k)))[0]
    x = u @ well_conditioned_mix(rng, k, n_a)
    y = u @ well_conditioned_mix(rng, k, n_b)
    x += noise * np.linalg.norm(x, axis=0) * rng.normal(size=x.shape) / np.sqrt(d)
    y += noise * np.linalg.norm(y, axis=0) * rng.normal(size=y.shape) / np.sqrt(d)
    return x, y


# ---------------------------------------------------------------- maximum match


def test_planted_mixed_subspace_is_a_full_match_and_orthogonal_neuron_is_excluded():
    x, y = mixed_subspace()
    m = maximum_match(x, y, 0.15)
    assert list(m.a) == list(range(8)) and list(m.b) == list(range(10))
    assert m.similarity == 1.0
    # append a neuron orthogonal to span(Y) on the A side: it must be excluded, nothing else
    q = np.linalg.qr(y)[0]
    z = np.random.default_rng(1).normal(size=400)
    z -= q @ (q.T @ z)
    m2 = maximum_match(np.column_stack([x, z]), y, 0.15)
    assert list(m2.a) == list(range(8)) and list(m2.b) == list(range(10))
    assert m2.similarity == pytest.approx(18 / 19)


def test_noise_above_eps_breaks_the_match():
    x, y = mixed_subspace(noise=0.5)
    assert maximum_match(x, y, 0.15).similarity == 0.0


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_the_naive_lstsq_reference(seed):
    rng = np.random.default_rng(seed)
    d = 30
    u = rng.normal(size=(d, 5))
    x = np.column_stack([u @ rng.normal(size=(5, 4)), rng.normal(size=(d, 5))])
    y = np.column_stack([u[:, :4] @ rng.normal(size=(4, 5)), rng.normal(size=(d, 4))])
    x += 0.05 * rng.normal(size=x.shape)
    y += 0.05 * rng.normal(size=y.shape)
    eps_values = [0.1, 0.3, 0.5, 0.7, 0.85, 0.95]
    sweep = maximum_match_sweep(x, y, eps_values)
    for eps in eps_values:
        ref_a, ref_b = naive_max_match(x, y, eps)
        assert list(sweep.matches[eps].a) == ref_a, eps
        assert list(sweep.matches[eps].b) == ref_b, eps


def test_same_result_for_any_permutation_of_neurons():
    x, y = planted_tiny(3, noise=0.05)
    rng = np.random.default_rng(0)
    for eps in (0.1, 0.3, 0.6):
        base = maximum_match(x, y, eps)
        for _ in range(3):
            pa, pb = rng.permutation(8), rng.permutation(8)
            m = maximum_match(x[:, pa], y[:, pb], eps)
            assert sorted(pa[m.a]) == list(base.a) and sorted(pb[m.b]) == list(base.b)


def test_invariant_to_neuron_scale_but_not_centred():
    x, y = mixed_subspace(noise=0.0, seed=4)
    scale = np.random.default_rng(0).uniform(0.01, 100, size=x.shape[1])
    assert maximum_match(x * scale, y, 1e-6).similarity == 1.0
    # subspace match does not centre: a constant offset moves a neuron off the span
    shifted = y + 3.0 * np.abs(y).mean(axis=0)
    assert maximum_match(x, shifted, 0.15).similarity < 1.0


@pytest.mark.parametrize("seed", [0, 1])
def test_maximum_match_is_the_union_of_all_brute_force_matches(seed):
    x, y = planted_tiny(seed, noise=0.03)
    rng = np.random.default_rng(seed)
    x[:, 6] = x[:, 0] + 0.3 * np.linalg.norm(x[:, 0]) * rng.normal(size=16) / 4  # a borderline neuron
    for eps in (0.08, 0.15, 0.4):
        is_match, _ = brute_force(x, y, eps)
        union = int(np.bitwise_or.reduce(np.flatnonzero(is_match))) if is_match.any() else 0
        m = maximum_match(x, y, eps)
        mm = to_mask(m.a, m.b, 8)
        assert mm == union
        assert mm == 0 or is_match[mm]  # the maximum match is itself a match


def test_eps_limits():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(50, 6))
    y = x @ rng.normal(size=(6, 6))  # exactly the same span
    assert maximum_match(x, y, 1e-9).similarity == 1.0  # ε → 0: exact span equality still matches
    generic = rng.normal(size=(50, 6))
    assert maximum_match(x, generic, 1e-9).similarity == 0.0  # ε → 0: nothing generic matches
    assert maximum_match(x, generic, 0.0).similarity == 0.0
    dead = np.column_stack([generic, np.zeros(50)])
    for eps in (1.0, 1.5):  # distances are sines ≤ 1: every live neuron matches, dead ones never
        m = maximum_match(x, dead, eps)
        assert len(m.a) == 6 and list(m.b) == list(range(6)) and m.similarity == pytest.approx(12 / 13)
    q = np.linalg.qr(x)[0]
    orth = generic - q @ (q.T @ generic)  # orthogonal to span(x): distance exactly 1
    assert maximum_match(x, orth, 1.0).similarity == 1.0
    assert maximum_match(x, orth, 0.999).similarity == 0.0


def test_dead_neurons_are_dropped_but_counted():
    x, y = mixed_subspace(n_a=9)  # 9 neurons in an 8-dim space: one can die without losing the span
    x[:, 2] = 0.0
    y = np.column_stack([y, np.zeros(400)])
    m = maximum_match(x, y, 0.15)
    assert 2 not in m.a and len(m.a) == 8 and len(m.b) == 10
    assert m.d_a == 9 and m.d_b == 11 and m.similarity == pytest.approx(18 / 20)
    assert maximum_match(np.zeros((10, 3)), np.zeros((10, 2)), 0.5).similarity == 0.0


def test_whole_layer_epsilon_is_the_largest_distance_and_the_full_match_threshold():
    rng = np.random.default_rng(2)
    x, y = mixed_subspace(noise=0.1, seed=2)
    x = np.column_stack([x, rng.normal(size=400) * 0.05 + x[:, 0]])
    ref = max(max(naive_dist(x[:, i], y) for i in range(x.shape[1])), max(naive_dist(y[:, j], x) for j in range(y.shape[1])))
    eps = whole_layer_epsilon(x, y)
    assert eps == pytest.approx(ref, rel=1e-10)
    assert maximum_match(x, y, eps * (1 + 1e-9)).similarity == 1.0
    assert maximum_match(x, y, eps * (1 - 1e-6)).similarity < 1.0


def test_rank_deficient_spans_use_the_numerical_rank():
    rng = np.random.default_rng(0)
    y = rng.normal(size=(40, 4))
    y = np.column_stack([y, y[:, 0] + y[:, 1], y[:, 2]])  # rank 4 with 6 columns
    basis = orthonormal_basis(torch.from_numpy(y))
    assert basis.shape == (40, 4)
    z = rng.normal(size=(40, 7))
    got = relative_residuals(torch.from_numpy(z), torch.from_numpy(y)).numpy()
    want = [naive_dist(z[:, i], y) for i in range(7)]
    np.testing.assert_allclose(got, want, rtol=1e-10)
    # more neurons than coordinates: the span is the whole space, distances are 0
    wide = rng.normal(size=(5, 9))
    assert float(relative_residuals(torch.from_numpy(rng.normal(size=(5, 3))), torch.from_numpy(wide)).max()) < 1e-12


def test_float32_input_and_bad_input_errors():
    x, y = mixed_subspace()
    assert maximum_match(x.astype(np.float32), y.astype(np.float32), 0.15).similarity == 1.0
    bad = x.copy()
    bad[3, 1] = np.nan
    with pytest.raises(ValueError, match="NaN"):
        maximum_match(bad, y, 0.2)
    with pytest.raises(ValueError, match="different coordinates"):
        maximum_match(x[:-1], y, 0.2)
    with pytest.raises(ValueError, match="2-D"):
        maximum_match(x[:, 0], y, 0.2)
    with pytest.raises(ValueError, match="ε"):
        maximum_match(x, y, -0.1)


# ---------------------------------------------------------------- v-minimal and simple matches


def test_v_minimal_and_simple_matches_against_brute_force_on_planted_example():
    x, y = planted_tiny(0)
    eps = 0.15
    is_match, is_simple = brute_force(x, y, eps)
    truth = set(np.flatnonzero(is_simple).tolist())
    assert truth == {to_mask([0], [0], 8), to_mask([1, 2], [1, 2], 8), to_mask([3, 4, 5], [3, 4, 5], 8)}
    mm = maximum_match(x, y, eps)
    for side, members in (("a", mm.a), ("b", mm.b)):
        for v in members:
            vm = v_minimal_match(x, y, eps, side, int(v))
            mask = to_mask(vm.a, vm.b, 8)
            v_bit = 1 << (int(v) + (8 if side == "b" else 0))
            assert is_match[mask] and mask & v_bit  # a match containing v
            assert not any(is_match[s] and s & v_bit for s in submasks(mask) if s != mask)  # minimal
    found = {to_mask(s.a, s.b, 8) for s in simple_matches(x, y, eps)}
    assert found == truth
    assert v_minimal_match(x, y, eps, "a", 7) is None  # not in the maximum match


@pytest.mark.parametrize("seed", [0, 1, 2, 3])
def test_v_minimal_matches_on_unstructured_data_are_minimal_simple_matches(seed):
    """Where minimal matches are not unique (random data, large ε) the greedy search still
    only returns genuine simple matches, each minimal for its v."""
    rng = np.random.default_rng(seed)
    x, y = rng.normal(size=(6, 5)), rng.normal(size=(6, 5))
    y[:, 0] = x[:, 0] + 0.1 * rng.normal(size=6)
    y[:, 1] = x[:, 1] + x[:, 2] + 0.1 * rng.normal(size=6)
    eps = 0.5
    is_match, is_simple = brute_force(x, y, eps)
    for s in simple_matches(x, y, eps):
        assert is_simple[to_mask(s.a, s.b, 5)]


@pytest.mark.parametrize("seed", [0, 1])
def test_fast_v_minimal_equals_the_one_at_a_time_reference(seed):
    rng = np.random.default_rng(seed)
    d = 14
    x, y = rng.normal(size=(d, 7)), rng.normal(size=(d, 6))
    y[:, :3] = x[:, :4] @ rng.normal(size=(4, 3)) + 0.05 * rng.normal(size=(d, 3))
    for eps in (0.3, 0.6):
        for side, n in (("a", 7), ("b", 6)):
            for v in range(n):
                ref = naive_v_minimal(x, y, eps, side, v)
                got = v_minimal_match(x, y, eps, side, v)
                assert (None if got is None else (got.a, got.b)) == ref, (eps, side, v)


def test_simple_matches_of_identical_layers_are_single_neuron_pairs():
    x = np.random.default_rng(0).normal(size=(60, 5))
    found = simple_matches(x, x * 2.0, 0.05)
    assert sorted((s.a, s.b) for s in found) == [((i,), (i,)) for i in range(5)]
    assert all(s.found_from == 2 for s in found)


@pytest.mark.gpu
@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs CUDA")
def test_cuda_gives_the_cpu_result():
    x, y = mixed_subspace(noise=0.2)
    cpu = maximum_match_sweep(x, y, [0.1, 0.2, 0.3])
    gpu = maximum_match_sweep(x, y, [0.1, 0.2, 0.3], device="cuda")
    for e in cpu.matches:
        assert list(cpu.matches[e].a) == list(gpu.matches[e].a) and list(cpu.matches[e].b) == list(gpu.matches[e].b)
    assert cpu.whole_layer_eps == pytest.approx(gpu.whole_layer_eps, rel=1e-9)
    assert [(s.a, s.b) for s in simple_matches(x, y, 0.3)] == [(s.a, s.b) for s in simple_matches(x, y, 0.3, device="cuda")]
    exact_cpu = simple_matches(x, y, 0.3, mode="exact")
    assert [(s.a, s.b) for s in exact_cpu] == [(s.a, s.b) for s in simple_matches(x, y, 0.3, device="cuda", mode="exact")]
    chance_cpu = chance_level(x, y, [0.1, 0.5, 0.99], permutations=2)
    chance_gpu = chance_level(x, y, [0.1, 0.5, 0.99], permutations=2, device="cuda")
    np.testing.assert_array_equal(chance_cpu.similarity, chance_gpu.similarity)


# ---------------------------------------------------------------- exact mode: every simple match


def random_redundant_case(rng: np.random.Generator):
    """≤ 6 + 6 neurons in few coordinates, often with redundant neurons (near-copies and mixes
    of other neurons, on either side), which give a neuron several v-minimal matches."""
    na, nb = (int(n) for n in rng.integers(2, 7, size=2))
    d = int(rng.integers(3, 9))
    x, y = rng.normal(size=(d, na)), rng.normal(size=(d, nb))
    if rng.random() < 0.75:
        for j in range(nb):
            if rng.random() < 0.6:  # a B neuron mixing one or two A neurons
                k = int(rng.integers(1, min(2, na) + 1))
                y[:, j] = x[:, rng.choice(na, size=k, replace=False)] @ rng.normal(size=k) + 0.15 * rng.normal(size=d)
        for i in range(1, na):
            if rng.random() < 0.3:  # a redundant A neuron: near-copy of an earlier one
                x[:, i] = x[:, int(rng.integers(i))] * rng.normal() + 0.1 * rng.normal(size=d)
    return x, y, float(rng.uniform(0.15, 0.6))


def test_exact_mode_equals_brute_force_on_200_random_cases_where_greedy_misses_some():
    rng = np.random.default_rng(16)
    greedy_missed, exact_found_more = 0, 0
    for case in range(200):
        x, y, eps = random_redundant_case(rng)
        na = x.shape[1]
        is_match, is_simple = brute_force(x, y, eps)
        truth = set(np.flatnonzero(is_simple).tolist())
        exact = simple_matches(x, y, eps, mode="exact", budget=None)
        greedy = simple_matches(x, y, eps)
        got = {to_mask(s.a, s.b, na) for s in exact}
        assert exact.complete and exact.mode == "exact"
        assert got == truth, (case, sorted(got - truth), sorted(truth - got))
        greedy_set = {to_mask(s.a, s.b, na) for s in greedy}
        assert greedy_set <= truth  # greedy finds genuine simple matches, maybe not all
        if greedy_set != truth:
            greedy_missed += 1
            exact_found_more += len(got - greedy_set) > 0
        # found_from in exact mode: the number of neurons v for which the match is v-minimal
        for s in exact:
            m = to_mask(s.a, s.b, na)
            n_v = sum(1 for bit in range(x.shape[1] + y.shape[1]) if m >> bit & 1
                      and not any(is_match[t] and t >> bit & 1 for t in submasks(m) if t != m))  # fmt: skip
            assert s.found_from == n_v
    assert greedy_missed >= 10  # the sample does contain the cases the authors' greedy search misses
    assert exact_found_more == greedy_missed


def test_exact_mode_budget_is_reported_and_keeps_the_greedy_matches():
    rng = np.random.default_rng(3)
    x = rng.normal(size=(5, 6))
    y = np.column_stack([x[:, :3] + 0.1 * rng.normal(size=(5, 3)), rng.normal(size=(5, 3))])
    full = simple_matches(x, y, 0.5, mode="exact", budget=None)
    greedy = simple_matches(x, y, 0.5)
    assert full.complete and full.fixed_points > 20 and len(full) > len(greedy)
    cut = simple_matches(x, y, 0.5, mode="exact", budget=20)
    assert not cut.complete and cut.fixed_points <= 20
    keys = {(s.a, s.b) for s in cut}
    assert {(s.a, s.b) for s in greedy} <= keys <= {(s.a, s.b) for s in full}
    with pytest.raises(ValueError, match="mode"):
        simple_matches(x, y, 0.5, mode="all")
    with pytest.raises(ValueError, match="budget"):
        simple_matches(x, y, 0.5, mode="exact", budget=0)


def test_greedy_default_is_unchanged_and_exact_agrees_on_planted_blocks():
    x, y = planted_tiny(0)
    greedy = simple_matches(x, y, 0.15)
    assert greedy.mode == "greedy" and greedy.complete
    exact = simple_matches(x, y, 0.15, mode="exact")
    assert [(s.a, s.b) for s in exact] == [(s.a, s.b) for s in greedy]
    assert [s.found_from for s in exact] == [s.found_from for s in greedy]


# ---------------------------------------------------------------- chance level


def test_chance_level_equals_the_sweep_of_explicitly_permuted_coordinates():
    """The shortcut (reused bases, one matmul per permutation) against the plain definition:
    maximum matches of A and the row-permuted B, computed from scratch."""
    rng = np.random.default_rng(5)
    x, y = mixed_subspace(d=300, k=6, n_a=8, n_b=9, noise=0.3, seed=5)
    x = np.maximum(x + 0.02, 0.0)  # non-negative, as ReLU layers are
    y = np.column_stack([np.maximum(y + 0.02, 0.0), np.zeros(300)])  # and one dead neuron
    perms = coordinate_permutations(300, 3, 7)
    # under the first permutation, A neuron 3 and B neuron 0 lie within 1e-6 of each other's
    # span: the explicit-residual path of the shortcut is exercised on both sides
    x[:, 3] = y[perms[0], 0] + 1e-6 * rng.normal(size=300)
    eps = [1e-4, 0.3, 0.6, 0.8, 0.9, 0.95, 0.99]
    chance = chance_level(x, y, eps, permutations=3, seed=7)
    assert chance.similarity.shape == (3, len(eps)) and chance.eps == tuple(eps)
    assert chance.similarity[0, 0] == pytest.approx(2 / 18)  # the planted pair, and only under that permutation
    for p, perm in enumerate(perms):
        plain = maximum_match_sweep(x, y[perm], eps)
        assert [plain.matches[e].similarity for e in eps] == list(chance.similarity[p])
        assert chance.whole_layer_eps[p] == pytest.approx(plain.whole_layer_eps, rel=1e-9)
    assert chance.mean[0.3] == pytest.approx(float(chance.similarity[:, 0].mean()))
    assert set(chance.std) == set(eps)


@pytest.mark.parametrize(("d", "k"), [(2000, 40), (500, 64)])
def test_chance_level_of_random_vectors_follows_sqrt_1_minus_k_over_d(d, k):
    """A random vector is at distance ≈ √(1 − k/D) from a random k-dim span: the chance maximum
    match is everything a little above that threshold and nothing well below it."""
    rng = np.random.default_rng(d)
    x, y = rng.normal(size=(d, k)), rng.normal(size=(d, k))
    threshold = np.sqrt(1 - k / d)
    spread = 4 * np.sqrt(2 * k) / d / (2 * threshold)  # 4 σ of the sine, from the Beta law of cos²
    eps = [threshold - 2 * spread, threshold + 2 * spread]
    chance = chance_level(x, y, eps, permutations=3)
    assert chance.mean[eps[0]] == 0.0 and chance.mean[eps[1]] == 1.0
    assert chance.std[eps[0]] == 0.0 and chance.std[eps[1]] == 0.0
    assert np.all(np.abs(chance.whole_layer_eps - threshold) < spread)


def test_chance_level_keeps_non_negativity_and_sits_below_a_real_match():
    """Rectified vectors share the all-positive directions, so unrelated ReLU layers match at a
    smaller ε than Gaussian ones: the permutation keeps that, a Gaussian estimate would not.
    And two layers spanning the same subspace match far above their chance level."""
    rng = np.random.default_rng(1)
    d, k = 1000, 32
    x = np.maximum(rng.normal(size=(d, k)) + 0.5, 0.0)
    y = np.maximum(rng.normal(size=(d, k)) + 0.5, 0.0)
    chance = chance_level(x, y, [0.5], permutations=2)
    assert chance.whole_layer_eps.max() < np.sqrt(1 - k / d) - 0.1
    xs, ys = mixed_subspace(d=1000, k=8, n_a=8, n_b=8, noise=0.05, seed=1)
    assert maximum_match(xs, ys, 0.2).similarity == 1.0
    assert chance_level(xs, ys, [0.2], permutations=2).mean[0.2] == 0.0


def test_chance_level_needs_frames_and_handles_dead_layers():
    x = np.random.default_rng(0).normal(size=(50, 4))
    with pytest.raises(ValueError, match="frames"):
        chance_from_sweep(maximum_match_sweep(x, x, [0.5]), [0.5])
    dead = chance_level(x, np.zeros((50, 3)), [0.5, 1.0], permutations=2)
    assert list(dead.similarity[:, 0]) == [0.0, 0.0] and list(dead.whole_layer_eps) == [1.0, 1.0]
    with pytest.raises(ValueError, match="permutation"):
        chance_level(x, x, [0.5], permutations=0)


# ---------------------------------------------------------------- whole-layer ε of dead layers


def test_whole_layer_epsilon_of_a_dead_layer_is_one_not_zero():
    """One side entirely dead: the live neurons are at distance 1 from the empty span, so the
    live layers match only from ε = 1 on (the reference code's 0 would read as a perfect match);
    both sides dead: NaN (nothing to match)."""
    x = np.random.default_rng(0).normal(size=(40, 5))
    dead = np.zeros((40, 3))
    assert whole_layer_epsilon(x, dead) == 1.0 and whole_layer_epsilon(dead, x) == 1.0
    assert maximum_match(x, dead, 0.999).similarity == 0.0
    m = maximum_match(x, dead, 1.0)  # at the whole-layer ε the maximum match is every live neuron
    assert list(m.a) == list(range(5)) and len(m.b) == 0
    assert naive_dist(x[:, 0], dead[:, :0]) == 1.0  # the naive reference's convention agrees
    assert np.isnan(whole_layer_epsilon(dead, dead[:, :2]))
    assert maximum_match(dead, dead, 0.5).similarity == 0.0


# ---------------------------------------------------------------- one layer pair, all of it


def test_compare_layers_adds_the_chance_level_and_exact_simple_matches():
    from repmatch.settings import ConfigError, section_settings
    from repmatch.subspace_match.compare import compare_layers

    def settings(**values):
        return section_settings("subspace_match", values)

    rng = np.random.default_rng(0)
    base = np.maximum(rng.normal(size=(40, 6, 5, 5)), 0)  # (n, C, H, W) ReLU maps
    a = base + 0.02 * rng.random(size=base.shape)
    b = np.concatenate([base[:, ::-1] * 2.0, np.maximum(rng.normal(size=(40, 2, 5, 5)), 0)], axis=1)
    res = compare_layers(a, b, settings(eps=[0.1, 0.5], n_coords=300, repeats=2, simple_eps=0.1, simple_repeats=2,
                                        simple_mode="exact", chance_permutations=3), key="c")  # fmt: skip
    assert len(res.chance_whole_layer_eps) == 6 and all(len(v) == 6 for v in res.chance_similarity.values())
    assert np.mean(res.similarity[0.1]) == pytest.approx(12 / 14)  # the six shared channels match
    assert max(res.chance_similarity[0.1]) == 0.0  # and would not by chance
    assert res.simple_complete == [True, True] and res.simple_mode == "exact"
    assert sorted(len(s.a) + len(s.b) for r, s in res.simple if r == 0) == [2] * 6
    plain = compare_layers(a, b, settings(eps=[0.1, 0.5], n_coords=300, repeats=2, simple_eps=0.1, chance_permutations=0), key="c")
    assert plain.similarity == res.similarity and plain.chance_similarity == {}
    with pytest.raises(ConfigError, match="simple_mode"):
        settings(eps=[0.1], n_coords=300, repeats=1, simple_mode="all")
