"""Copy the default run's figures shown in the README and the docs into ``docs/img/``.

Run after the default pipeline (``snakemake --cores 2``)::

    python tools/refresh_doc_figures.py

Why a manifest: the pictures in the README must be what the default run produces now. For each figure,
``docs/img/figures.json`` records the sha256 of the code and settings that draw it (the family's
``plots.py``, the shared ``plotting.py``, and the default config with the schema, parsed so comments do not
count). ``tests/docs/test_docs.py`` recomputes those digests: when the code or the default changed and the
copy was not refreshed, it fails and names this command.
"""

from __future__ import annotations

import hashlib
import json
import shutil
import sys
from pathlib import Path

import yaml

REPO = Path(__file__).resolve().parents[1]
IMG = REPO / "docs" / "img"
MANIFEST = IMG / "figures.json"
PKG = "src/repmatch"

#: docs/img name -> (figure of the default run, the code that draws it besides the shared plotting code)
FIGURES: dict[str, tuple[str, tuple[str, ...]]] = {
    "stitching_within_accuracy.png": ("results/figures/stitching/within_accuracy_grids.png", (f"{PKG}/stitching/plots.py",)),
    "stitching_accuracy_vs_ood.png": ("results/figures/stitching/accuracy_vs_ood.png", (f"{PKG}/stitching/plots.py",)),
    "similarity_linear_cka_cross_seed.png": ("results/figures/similarity/linear_cka_cross_seed.png", (f"{PKG}/similarity/plots.py",)),
    "subspace_max_match_vs_eps.png": ("results/figures/subspace/max_match_vs_eps.png", (f"{PKG}/subspace_match/plots.py",)),
    "sensitivity_vs_specificity.png": ("results/figures/sensitivity/sensitivity_vs_specificity.png", (f"{PKG}/sensitivity/plots.py",)),
}
SHARED = (f"{PKG}/plotting.py",)


def settings_digest(repo: Path = REPO) -> str:
    """The default experiment as data (config.yaml + schema.yaml parsed: comments and layout do not count)."""
    parsed = [yaml.safe_load((repo / name).read_text()) for name in ("config.yaml", f"{PKG}/schema.yaml")]
    return hashlib.sha256(json.dumps(parsed, sort_keys=True).encode()).hexdigest()


def code_digest(files: tuple[str, ...], repo: Path = REPO) -> str:
    h = hashlib.sha256()
    for name in sorted(files + SHARED):
        h.update(name.encode() + b"\0" + (repo / name).read_bytes())
    return h.hexdigest()


def expected_manifest(repo: Path = REPO) -> dict[str, dict[str, str]]:
    """What ``figures.json`` must hold for the copies to be current (without the image digests)."""
    settings = settings_digest(repo)
    return {name: {"source": src, "code_sha256": code_digest(code, repo), "settings_sha256": settings}
            for name, (src, code) in FIGURES.items()}


def main(repo: Path = REPO) -> int:
    manifest = expected_manifest(repo)
    missing = [e["source"] for e in manifest.values() if not (repo / e["source"]).is_file()]
    if missing:
        print("missing figures (run `snakemake --cores 2` first): " + ", ".join(missing), file=sys.stderr)
        return 1
    IMG.mkdir(parents=True, exist_ok=True)
    for name, entry in manifest.items():
        shutil.copyfile(repo / entry["source"], IMG / name)
        entry["image_sha256"] = hashlib.sha256((IMG / name).read_bytes()).hexdigest()
    MANIFEST.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    print(f"copied {len(manifest)} figures to {IMG.relative_to(repo)}; manifest {MANIFEST.relative_to(repo)}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
