"""From cached activations to neuron vectors: one column per neuron, one row per coordinate.

A neuron of a flat layer (n, d) has one value per probe input, so its vector has n
coordinates. A conv channel (n, C, H, W) has a value at every (input, position), n·H·W
coordinates, which is too long for the projections; as in the authors' code we draw D of them
at random, *the same coordinates for both networks* (row k of A and row k of B must be the same
input at the same position), repeat R times with independent draws and average. The draws
depend only on (seed, layer names), not on job order, so reruns are reproducible.
"""

from __future__ import annotations

import zlib
from collections.abc import Sequence

import numpy as np
import torch
import torch.nn.functional as F

from ..kinds import token_layout


def token_maps(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Token layers (n, T, D) as conv-like maps, so every token is a position (a neuron's coordinate).

    Two token layers of the same length become (n, D, T, 1): token k of A meets token k of B,
    the CLS token included. Against any other shape a token layer loses its CLS token and its
    square patch grid becomes an (n, D, g, g) map, which :func:`align_spatial` then pools like a
    conv map (the similarity switch's ``per_token`` rule). Other layers pass through untouched.
    """
    if a.ndim != 3 and b.ndim != 3:
        return a, b
    if a.ndim == b.ndim == 3 and a.shape[1] == b.shape[1]:
        return _column_map(a), _column_map(b)
    return _grid_map(a), _grid_map(b)


def _column_map(x: np.ndarray) -> np.ndarray:
    return np.ascontiguousarray(np.asarray(x).transpose(0, 2, 1))[..., None]


def _grid_map(x: np.ndarray) -> np.ndarray:
    if x.ndim != 3:
        return x
    n, t, d = x.shape
    cls, g = token_layout(t)
    if g is None:
        raise ValueError(f"a sequence of {t} tokens has no square patch grid; it can only be matched to a token layer of {t} tokens")
    return np.ascontiguousarray(np.asarray(x)[:, int(cls):].transpose(0, 2, 1)).reshape(n, d, g, g)


def spatial_shape(shape: Sequence[int]) -> tuple[int, ...]:
    """Positions per input: (H, W) for conv maps, () for flat layers."""
    if len(shape) == 2:
        return ()
    if len(shape) == 4:
        return (int(shape[2]), int(shape[3]))
    raise ValueError(f"activations must be (n, d) or (n, C, H, W) (token layers go through token_maps), got shape {tuple(shape)}")


def n_coordinates(shape: Sequence[int]) -> int:
    """Length of a neuron's full vector: n·H·W (conv) or n (flat)."""
    return int(shape[0]) * int(np.prod(spatial_shape(shape), dtype=np.int64))


def align_spatial(a: np.ndarray, b: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Make two layers' neuron vectors comparable when their spatial sizes differ.

    Needed only for non-corresponding layer pairs (config ``layer_pairs: all``). The paper
    compares same-shape layers; here the larger map is average-pooled to the smaller one
    (adaptive pooling), and a conv layer facing a flat layer is pooled globally to one value per
    input. Same-shape pairs are returned untouched.
    """
    sa, sb = spatial_shape(a.shape), spatial_shape(b.shape)
    if a.shape[0] != b.shape[0]:
        raise ValueError(f"the two layers hold different numbers of probe inputs ({a.shape[0]} vs {b.shape[0]})")
    if sa == sb:
        return a, b
    target = () if not sa or not sb else (min(sa[0], sb[0]), min(sa[1], sb[1]))
    return _pool(a, target), _pool(b, target)


def _pool(x: np.ndarray, target: tuple[int, ...]) -> np.ndarray:
    if spatial_shape(x.shape) == target:
        return x
    t = torch.from_numpy(np.array(x, dtype=np.float32))  # a writable copy (x may be a read-only memmap)
    if not target:
        return t.mean(dim=(2, 3)).numpy()
    return F.adaptive_avg_pool2d(t, target).numpy()


def draw_coordinates(total: int, n_coords: int, repeats: int, seed: int, key: str = "") -> list[np.ndarray]:
    """R sorted draws of D distinct coordinates out of ``total`` (all of them, once, if D ≥ total).

    ``key`` (e.g. "conv1|conv1") makes the draws of different layer pairs independent yet
    reproducible.
    """
    if total < 1:
        raise ValueError("a layer with no coordinates cannot be matched")
    if n_coords < 1 or repeats < 1:
        raise ValueError(f"need n_coords ≥ 1 and repeats ≥ 1, got {n_coords} and {repeats}")
    if n_coords >= total:
        return [np.arange(total, dtype=np.int64)]
    rng = np.random.default_rng(np.random.SeedSequence([int(seed), zlib.crc32(key.encode())]))
    return [np.sort(rng.choice(total, size=n_coords, replace=False)) for _ in range(repeats)]


def gather_neuron_vectors(acts: np.ndarray, coords: np.ndarray) -> np.ndarray:
    """Rows ``coords`` of the neuron-vector matrix of ``acts``, shape (len(coords), neurons).

    Coordinate k of a conv layer is (input k // (H·W), position k % (H·W)), input-major, so the
    same k means the same input and position in both networks. Works on memory maps without
    materialising the full (n·H·W, C) matrix.
    """
    if acts.ndim == 2:
        return np.asarray(acts[coords])
    n, c, h, w = acts.shape
    flat = acts.reshape(n, c, h * w)
    return np.asarray(flat[coords // (h * w), :, coords % (h * w)])
