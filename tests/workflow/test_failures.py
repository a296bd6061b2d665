"""Failures that explain themselves and leave nothing behind, at the library level:
job logs keep the traceback, checkpoints are reproducible files verified on load, temps of
killed writes are removed by the next write, I/O errors name the file and the cause, and a
corrupt split.json is refused naming the file."""

from __future__ import annotations

import dataclasses
import errno
import hashlib
import json
import os
import signal
import struct
import subprocess
import sys
import textwrap
import time
import zipfile
from pathlib import Path
from unittest import mock

import numpy as np
import pytest
import torch

from repmatch import io as rio
from repmatch.backbone.activations import ActivationCache, write_cache
from repmatch.logs import job_log, job_logger, run_logged
from repmatch.networks import build_model, load_checkpoint, save_checkpoint
from repmatch.split_check import SplitFileError, check_split_file

SRC = Path(__file__).resolve().parents[2] / "src"
META = {"arch": "smallcnn", "num_classes": 10, "in_channels": 1, "image_size": 28}


def _python(code: str, **kw) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{SRC}{os.pathsep}{os.environ.get('PYTHONPATH', '')}", "OMP_NUM_THREADS": "1"}
    return subprocess.Popen([sys.executable, "-c", textwrap.dedent(code)], env=env, text=True, **kw)


# ---------------------------------------------------------------------------------------------
# 1. A failed job's log holds its traceback


def _failing_stage(log_file):
    """Like a real stage: asks for its own logger on the same file, logs, then fails deep inside."""
    job_logger("activations", log_file).info("cached nothing yet")
    layers = {"conv1": 0}
    return layers["nosuchlayer"]


def test_job_log_writes_the_uncaught_exception_to_the_log_file_and_reraises(tmp_path, capsys):
    log_file = tmp_path / "logs" / "activations" / "m.log"
    with pytest.raises(KeyError, match="nosuchlayer"), job_log("activations", log_file):
        _failing_stage(log_file)
    text = log_file.read_text()
    assert "cached nothing yet" in text  # the stage's own message was not truncated away
    assert "KeyError" in text and "nosuchlayer" in text
    assert "Traceback (most recent call last)" in text and "_failing_stage" in text  # the full traceback
    assert "nosuchlayer" in capsys.readouterr().err  # and on stderr too
    assert text.count("cached nothing yet") == 1


def test_run_logged_in_a_real_process_exits_non_zero_with_the_traceback_in_the_log(tmp_path):
    log_file = tmp_path / "job.log"
    proc = _python(
        f"""
        from repmatch.logs import run_logged
        def stage():
            raise ValueError("model.layers names 'nosuchlayer'")
        run_logged(stage, "activations", {str(log_file)!r})
        """,
        stdout=subprocess.PIPE, stderr=subprocess.PIPE,
    )
    _, err = proc.communicate(timeout=120)
    assert proc.returncode != 0
    text = log_file.read_text()
    assert "ValueError: model.layers names 'nosuchlayer'" in text and "Traceback" in text
    assert "nosuchlayer" in err


def test_job_log_passes_success_and_clean_exit_through(tmp_path):
    log_file = tmp_path / "ok.log"
    assert run_logged(lambda x: x + 1, "ok", log_file, 1) == 2
    with pytest.raises(SystemExit), job_log("ok", log_file):
        raise SystemExit(0)
    assert "failed" not in log_file.read_text()


def test_a_bad_layer_in_the_real_activations_stage_leaves_its_traceback_in_the_log(tmp_path, one_torch_thread):
    """The issue's reproduction: ``model.layers: [conv1, nosuchlayer]``."""
    from repmatch.backbone.stages import activations_stage, split_stage
    from repmatch.io import write_json
    from repmatch.settings import section_settings

    data = section_settings("data", {"name": "mnist5k", "split_seed": 0, "n_test": 500, "n_probe": 50})
    split = tmp_path / "data" / "split.json"
    split_stage(data=data, out_json=split, log=job_logger("split", None))
    torch.manual_seed(0)
    ckpt = tmp_path / "models" / "smallcnn_seed0" / "checkpoint.pt"
    sha = save_checkpoint(build_model("smallcnn", 10, 1, 28), ckpt, META)
    write_json({"checkpoint_sha256": sha}, ckpt.parent / "metrics.json")
    log_file = tmp_path / "logs" / "activations" / "smallcnn_seed0.log"
    # the settings loader refuses this layer list at parse time; the stage itself must fail clearly too
    model = section_settings("model", {"arch": "smallcnn"})
    model = dataclasses.replace(model, layers=("conv1", "nosuchlayer"))
    with pytest.raises(KeyError), job_log("activations", log_file) as log:
        activations_stage(
            model="smallcnn_seed0", data=data, model_settings=model,
            activations=section_settings("activations", {"batch_size": 50}), device_spec="cpu", split_json=split,
            checkpoint=ckpt, metrics_json=ckpt.parent / "metrics.json",
            out_dir=tmp_path / "activations" / "smallcnn_seed0", log=log,
        )
    text = log_file.read_text()
    assert log_file.stat().st_size > 0 and "KeyError" in text and "nosuchlayer" in text and "select_layers" in text
    assert not (tmp_path / "activations" / "smallcnn_seed0").exists()


# ---------------------------------------------------------------------------------------------
# 2. Checkpoints: reproducible bytes, sha256 recorded, verified on load


def _seeded_model(seed: int = 0):
    torch.manual_seed(seed)
    return build_model("smallcnn", 10, 1, 28)


def test_the_same_weights_give_byte_identical_checkpoints_without_temp_names_inside(tmp_path):
    model = _seeded_model()
    sha_a = save_checkpoint(model, tmp_path / "a" / "checkpoint.pt", META)
    sha_b = save_checkpoint(model, tmp_path / "b" / "other_name.pt", META)
    data_a, data_b = (tmp_path / "a" / "checkpoint.pt").read_bytes(), (tmp_path / "b" / "other_name.pt").read_bytes()
    assert data_a == data_b and sha_a == sha_b == hashlib.sha256(data_a).hexdigest()
    names = zipfile.ZipFile(tmp_path / "a" / "checkpoint.pt").namelist()
    assert all(n.startswith("archive/") for n in names), names  # no temp (or any file) name in the records
    assert not any(".tmp" in n for n in names)
    assert sorted(p.name for p in (tmp_path / "a").iterdir()) == ["checkpoint.pt"]  # no temp left
    model2 = _seeded_model(1)
    assert save_checkpoint(model2, tmp_path / "c.pt", META) != sha_a


def test_checkpoint_bytes_are_the_same_in_another_process(tmp_path):
    """Nothing process-specific (pid, time, random id) ends up in the file."""
    here = tmp_path / "here.pt"
    sha_here = save_checkpoint(_seeded_model(), here, META)
    there = tmp_path / "there.pt"
    proc = _python(
        f"""
        import torch
        from repmatch.networks import build_model, save_checkpoint
        torch.manual_seed(0)
        print(save_checkpoint(build_model("smallcnn", 10, 1, 28), {str(there)!r}, {META!r}))
        """,
        stdout=subprocess.PIPE,
    )
    out, _ = proc.communicate(timeout=120)
    assert proc.returncode == 0
    assert out.strip() == sha_here and there.read_bytes() == here.read_bytes()


def test_the_same_training_twice_gives_byte_identical_checkpoint_files(tmp_path, mnist_splits, one_torch_thread):
    import dataclasses

    from repmatch.backbone.training import train_new_model
    from repmatch.settings import section_settings

    splits = dataclasses.replace(mnist_splits, train=mnist_splits.train.subset(np.arange(300)), test=mnist_splits.test.subset(np.arange(100)))
    cfg = section_settings("train", {"epochs": 1, "batch_size": 100, "lr": 0.05, "threads": 1})
    shas = []
    for run in ("run1", "run2"):
        net, _ = train_new_model("smallcnn", splits, cfg, seed=3, progress=False)
        shas.append(save_checkpoint(net.cpu(), tmp_path / run / "checkpoint.pt", META))
    assert shas[0] == shas[1]
    assert (tmp_path / "run1" / "checkpoint.pt").read_bytes() == (tmp_path / "run2" / "checkpoint.pt").read_bytes()


def _data_offset(path: Path, record: str) -> int:
    """Byte offset of ``record``'s stored data inside the zip file (local header + name + extra)."""
    info = zipfile.ZipFile(path).getinfo(record)
    raw = path.read_bytes()
    name_len, extra_len = struct.unpack("<HH", raw[info.header_offset + 26 : info.header_offset + 30])
    return info.header_offset + 30 + name_len + extra_len


def test_a_flipped_low_bit_in_the_weights_is_caught_naming_the_file(tmp_path):
    path = tmp_path / "models" / "m" / "checkpoint.pt"
    sha = save_checkpoint(_seeded_model(), path, META)
    weights = next(n for n in zipfile.ZipFile(path).namelist() if "/data/" in n and not n.endswith("serialization_id"))
    raw = bytearray(path.read_bytes())
    raw[_data_offset(path, weights) + 4] ^= 0x01  # the lowest mantissa bit of one float
    path.write_bytes(bytes(raw))
    # torch.load alone does not notice (this is why the check exists) ...
    torch.load(path, map_location="cpu", weights_only=True)
    # ... the zip CRCs do, with or without the recorded sha256.
    with pytest.raises(rio.ChecksumError, match=rf"{path}.*corrupt.*CRC"):
        load_checkpoint(path)
    with pytest.raises(rio.ChecksumError, match=rf"{path}.*corrupt.*sha256.*{sha}"):
        load_checkpoint(path, expected_sha256=sha)


def test_a_checkpoint_not_matching_its_recorded_sha256_is_refused(tmp_path):
    a, b = tmp_path / "a.pt", tmp_path / "b.pt"
    sha_a = save_checkpoint(_seeded_model(0), a, META)
    save_checkpoint(_seeded_model(1), b, META)
    assert load_checkpoint(a, expected_sha256=sha_a) is not None
    with pytest.raises(rio.ChecksumError, match=rf"{b}.*sha256"):
        load_checkpoint(b, expected_sha256=sha_a)  # a valid zip, but not the recorded file
    b.write_bytes(b.read_bytes()[:5000])
    with pytest.raises(rio.ChecksumError, match=rf"{b}.*corrupt"):
        load_checkpoint(b)


# ---------------------------------------------------------------------------------------------
# 3. Temps of killed writes are removed by the next write of the same output, nothing else


def test_temp_names_follow_the_convention_and_are_told_apart():
    final = Path("/r/activations/smallcnn_seed0")
    tmp = rio.temp_name(final)
    assert tmp.parent == final.parent and tmp.name.startswith(".smallcnn_seed0.") and tmp.name.endswith(".tmp")
    assert rio.is_temp_of(tmp, final)
    assert rio.is_temp_of(final.parent / ".smallcnn_seed0.k3_9zq0a.tmp", final)  # tempfile.mkstemp's style
    assert not rio.is_temp_of(final, final)
    assert not rio.is_temp_of(final.parent / ".smallcnn_seed0.1.abcdefgh.tmp", final)  # a temp of "smallcnn_seed0.1"
    assert not rio.is_temp_of(final.parent / ".smallcnn_seed0.abc.tmp", final)
    assert not rio.is_temp_of(Path("/elsewhere") / tmp.name, final)


def _acts(seed: int = 0):
    rng = np.random.default_rng(seed)
    return {"conv1": rng.standard_normal((20, 3, 4, 4)).astype(np.float32), "fc1": rng.standard_normal((20, 8)).astype(np.float32)}


def _tree(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*")) if p.is_file()}


def test_a_stale_temp_folder_next_to_an_activation_cache_is_removed_by_the_next_write(tmp_path):
    acts_root = tmp_path / "activations"
    out = acts_root / "smallcnn_seed0"
    # What a killed run left: a temp folder with a partial array, and an older-style temp file.
    stale = acts_root / ".smallcnn_seed0.ab12cd34.tmp"
    stale.mkdir(parents=True)
    (stale / "conv1.npy").write_bytes(b"\x93NUMPY partial")
    stale_file = acts_root / ".smallcnn_seed0.zz_9yy8x.tmp"
    stale_file.write_bytes(b"partial")
    # Finished neighbours that must stay: another model's cache and its own temp, a look-alike name.
    write_cache(acts_root / "smallcnn_seed1", _acts(1), np.arange(20))
    other_temp = acts_root / ".smallcnn_seed1.ab12cd34.tmp"
    other_temp.mkdir()
    lookalike = acts_root / ".smallcnn_seed0.tmp"
    lookalike.write_text("not a temp of ours")
    before = _tree(acts_root / "smallcnn_seed1")

    write_cache(out, _acts(0), np.arange(20))

    assert not stale.exists() and not stale_file.exists()
    assert other_temp.exists() and lookalike.exists() and _tree(acts_root / "smallcnn_seed1") == before
    ActivationCache(out).load("conv1")
    assert sorted(p.name for p in acts_root.iterdir()) == sorted(
        [".smallcnn_seed0.tmp", ".smallcnn_seed1.ab12cd34.tmp", "smallcnn_seed0", "smallcnn_seed1"]
    )


def test_kill_9_during_a_cache_write_then_rerun_gives_the_clean_result_and_no_temp(tmp_path):
    acts_root = tmp_path / "activations"
    out = acts_root / "smallcnn_seed0"
    proc = _python(
        f"""
        import sys, time, numpy as np
        from repmatch.io import atomic_dir
        with atomic_dir({str(out)!r}) as tmp:
            np.save(tmp / "conv1.npy", np.zeros((1000, 100), np.float32))
            print("ready", flush=True)
            time.sleep(120)
        """,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout.readline().strip() == "ready"
    proc.send_signal(signal.SIGKILL)
    proc.wait(timeout=60)
    leftovers = [p for p in acts_root.iterdir() if rio.is_temp_of(p, out)]
    assert len(leftovers) == 1 and leftovers[0].is_dir() and not out.exists()

    write_cache(out, _acts(0), np.arange(20))  # the rerun of the same job
    write_cache(tmp_path / "clean" / "smallcnn_seed0", _acts(0), np.arange(20))  # a clean run
    assert sorted(p.name for p in acts_root.iterdir()) == ["smallcnn_seed0"]
    assert _tree(out) == _tree(tmp_path / "clean" / "smallcnn_seed0")


def test_the_workflow_sweep_removes_only_old_temps(tmp_path):
    (tmp_path / "a").mkdir()
    old = tmp_path / "a" / ".x.parquet.abcdefgh.tmp"
    old.write_text("old")
    os.utime(old, (time.time() - 7200, time.time() - 7200))
    old_dir = tmp_path / ".m.ijklmnop.tmp"
    (old_dir / "inner").mkdir(parents=True)
    (old_dir / "inner" / ".y.npy.qrstuvwx.tmp").write_text("inside")
    os.utime(old_dir, (time.time() - 7200, time.time() - 7200))
    fresh = tmp_path / "a" / ".x.parquet.12345678.tmp"
    fresh.write_text("a job writing right now")
    finished = tmp_path / "a" / "x.parquet"
    finished.write_text("done")
    os.utime(finished, (time.time() - 7200, time.time() - 7200))
    removed = rio.remove_stale_temps_under(tmp_path, older_than=time.time() - 3600)
    assert set(removed) == {old, old_dir}
    assert fresh.exists() and finished.exists() and not old.exists() and not old_dir.exists()


# ---------------------------------------------------------------------------------------------
# 4. I/O errors name the file and the cause


@pytest.mark.parametrize(
    ("code", "cause"),
    [(errno.ENOSPC, "disk full"), (errno.EROFS, "read-only file system"), (errno.EACCES, "permission denied"), (errno.EDQUOT, "quota")],
)
def test_a_failing_array_write_names_the_cache_and_the_cause(tmp_path, monkeypatch, code, cause):
    out = tmp_path / "activations" / "smallcnn_seed0"

    def failing_save(file, arr, *a, **k):
        raise OSError(code, os.strerror(code), str(file))

    monkeypatch.setattr(np, "save", failing_save)
    with pytest.raises(OSError, match=rf"{cause}.* while writing {out} \(") as info:
        write_cache(out, _acts(0), np.arange(20))
    assert info.value.errno == code
    assert isinstance(info.value.__cause__, OSError)  # the original stays chained
    assert not out.exists() and list((tmp_path / "activations").iterdir()) == []  # no temp left behind


def test_numpys_bare_short_write_is_reported_as_disk_full(tmp_path, monkeypatch):
    out = tmp_path / "t.json"

    def short_write(self, *a, **k):
        raise OSError("2508800 requested and 1630176 written")

    monkeypatch.setattr(Path, "write_text", short_write)
    with pytest.raises(OSError, match=rf"disk full .*while writing {out} \(2508800 requested and 1630176 written\)") as info:
        rio.write_json({"a": 1}, out)
    assert info.value.errno == errno.ENOSPC


def test_an_unreadable_input_is_named_as_such_not_as_the_output(tmp_path):
    src = tmp_path / "input.bin"

    def failing_read(self, *a, **k):
        raise PermissionError(errno.EACCES, "Permission denied", str(self))

    with pytest.raises(PermissionError, match=rf"permission denied while making {tmp_path / 'out.txt'}, on {src},"), \
            mock.patch.object(Path, "read_bytes", failing_read), rio.atomic_path(tmp_path / "out.txt") as tmp:
        tmp.write_bytes(src.read_bytes())


def test_unrelated_errors_pass_through_unchanged(tmp_path):
    with pytest.raises(FileNotFoundError) as info, rio.atomic_path(tmp_path / "x.txt"):
        (tmp_path / "no" / "such" / "input").read_bytes()
    assert "while writing" not in str(info.value)


@pytest.fixture
def small_tmpfs(tmp_path):
    """A 64 KiB tmpfs (needs root and mount rights; skipped elsewhere)."""
    mnt = tmp_path / "tmpfs"
    mnt.mkdir()
    if os.geteuid() != 0 or subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(mnt)], check=False, capture_output=True).returncode:
        pytest.skip("cannot mount a tmpfs here")
    try:
        yield mnt
    finally:
        subprocess.run(["umount", str(mnt)], check=False)


def test_a_really_full_disk_names_the_file_and_leaves_no_temp(small_tmpfs):
    out = small_tmpfs / "activations" / "smallcnn_seed0"
    big = {"conv1": np.ones((200, 1000), np.float32)}  # 800 kB into 64 kB
    with pytest.raises(OSError, match=rf"disk full.* while writing {out} \(") as info:
        write_cache(out, big, np.arange(200))
    assert info.value.errno == errno.ENOSPC
    assert list((small_tmpfs / "activations").iterdir()) == []
    # After space is freed (here: a smaller output) the rerun works.
    write_cache(out, {"conv1": np.ones((20, 10), np.float32)}, np.arange(20))
    assert ActivationCache(out).load("conv1").shape == (20, 10)


def test_a_read_only_file_system_names_the_file(small_tmpfs):
    subprocess.run(["mount", "-o", "remount,ro", str(small_tmpfs)], check=True)
    out = small_tmpfs / "metrics.json"
    with pytest.raises(OSError, match=rf"read-only file system while writing {out} \("):
        rio.write_json({"a": 1}, out)


# ---------------------------------------------------------------------------------------------
# 5. split.json checked on its own, naming the file and what is wrong


@pytest.fixture
def good_split(tmp_path):
    record = {
        "dataset": "mnist5k", "fingerprint": "f" * 64, "num_classes": 10, "input_shape": [1, 28, 28],
        "n_train": 6, "n_test": 4, "n_probe": 2,
        "train_ids": [0, 1, 2, 5, 6, 7], "test_ids": [3, 4, 8, 9], "probe_ids": [4, 9],
    }
    path = tmp_path / "data" / "split.json"
    path.parent.mkdir()
    path.write_text(json.dumps(record))
    return path, record


def test_a_good_split_passes_and_the_real_record_too(good_split, tmp_path, mnist_splits):
    path, record = good_split
    assert check_split_file(path) == record
    real = tmp_path / "real.json"
    rio.write_json(mnist_splits.record(), real)
    assert check_split_file(real)["n_probe"] == 100


@pytest.mark.parametrize(
    ("change", "message"),
    [
        (lambda r: r.pop("fingerprint"), r"missing keys \['fingerprint'\]"),
        (lambda r: r.update(fingerprint=""), "'fingerprint' must be a non-empty string"),
        (lambda r: r.update(train_ids=[0, 1, 2, 5, 6, "7"]), "'train_ids' holds '7'"),
        (lambda r: r.update(test_ids=[3, 4, 8, True]), "'test_ids' holds True"),
        (lambda r: r.update(test_ids=[3, 4, 8, 9.0]), "'test_ids' holds 9.0"),
        (lambda r: r.update(n_test=5), "'test_ids' has 4 ids but 'n_test' says 5"),
        (lambda r: r.update(train_ids=[0, 1, 2, 5, 6, 3]), "both 'train_ids' and 'test_ids' \\(e.g. 3\\)"),
        (lambda r: r.update(probe_ids=[4, 7]), "'probe_ids' are not test ids \\(e.g. 7\\)"),
        (lambda r: r.update(probe_ids=[4, 4]), "'probe_ids' repeats"),
        (lambda r: r.update(train_ids={"0": 1}), "'train_ids' must be a list"),
        (lambda r: r.update(n_probe=0), "'n_probe' must be a positive integer"),
    ],
)
def test_a_damaged_split_is_refused_naming_the_file_and_the_fault(good_split, change, message):
    path, record = good_split
    change(record)
    path.write_text(json.dumps(record))
    with pytest.raises(SplitFileError, match=rf"{path} is corrupt: .*{message}"):
        check_split_file(path)


def test_a_truncated_empty_or_missing_split_is_refused_naming_the_file(good_split):
    path, _ = good_split
    text = path.read_text()
    path.write_text(text[: len(text) // 2])
    with pytest.raises(SplitFileError, match=rf"{path} is corrupt: not valid JSON, truncated"):
        check_split_file(path)
    path.write_text("")
    with pytest.raises(SplitFileError, match=rf"{path} is corrupt: the file is empty"):
        check_split_file(path)
    path.write_bytes(b"\xff\xfe{")
    with pytest.raises(SplitFileError, match=rf"{path} is corrupt: not UTF-8"):
        check_split_file(path)
    path.write_text("[1, 2]")
    with pytest.raises(SplitFileError, match=rf"{path} is corrupt: expected a JSON object"):
        check_split_file(path)
    path.unlink()
    with pytest.raises(SplitFileError, match=rf"{path} does not exist"):
        check_split_file(path)


def test_the_stages_check_the_split_file_before_loading_any_data(good_split, monkeypatch):
    from repmatch import data
    from repmatch.settings import section_settings

    path, _ = good_split
    path.write_text(path.read_text()[:40])
    monkeypatch.setattr(data, "load_splits", lambda cfg: pytest.fail("data loaded before the split file was checked"))
    with pytest.raises(SplitFileError, match=str(path)):
        data.load_recorded_split(section_settings("data", {"name": "mnist5k"}), path)


def test_train_stage_records_the_checkpoint_sha256_in_metrics(tmp_path, monkeypatch):
    """metrics.json carries the sha256 of the checkpoint file next to it, verified by load_checkpoint."""
    from repmatch.backbone import stages, training
    from repmatch.settings import section_settings

    data = section_settings("data", {"name": "mnist5k", "split_seed": 0, "n_test": 500, "n_probe": 50})
    split = tmp_path / "split.json"
    log = job_logger("train", None)
    stages.split_stage(data=data, out_json=split, log=log)
    fake = {"test_accuracy": 0.1, "train_accuracy": 0.1, "epochs": 0, "train_seconds": 0.0}
    monkeypatch.setattr(training, "train_new_model", lambda arch, splits, cfg, seed, device, **kwargs: (_seeded_model(), dict(fake)))
    ckpt, metrics_json = tmp_path / "models" / "smallcnn_seed0" / "checkpoint.pt", tmp_path / "models" / "smallcnn_seed0" / "metrics.json"
    stages.train_stage(model="smallcnn_seed0", data=data, train=section_settings("train", {"epochs": 1}), device_spec="cpu",
                       split_json=split, checkpoint=ckpt, metrics_json=metrics_json, log=log)
    recorded = json.loads(metrics_json.read_text())["checkpoint_sha256"]
    assert recorded == hashlib.sha256(ckpt.read_bytes()).hexdigest()
    load_checkpoint(ckpt, expected_sha256=recorded)
