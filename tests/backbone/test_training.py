import dataclasses

import numpy as np
import torch

from repmatch.backbone.training import augment_batch, evaluate, train_new_model
from repmatch.settings import section_settings

CFG = section_settings("train", {"epochs": 1, "batch_size": 100, "lr": 0.05, "threads": 1})


def _small(splits, n=600):
    return dataclasses.replace(splits, train=splits.train.subset(np.arange(n)), test=splits.test.subset(np.arange(200)))


def test_training_is_bitwise_deterministic_and_seed_dependent(mnist_splits):
    splits = _small(mnist_splits)
    a, metrics_a = train_new_model("smallcnn", splits, CFG, seed=3, progress=False)
    b, metrics_b = train_new_model("smallcnn", splits, CFG, seed=3, progress=False)
    c, _ = train_new_model("smallcnn", splits, CFG, seed=4, progress=False)
    for (name, wa), wb, wc in zip(a.state_dict().items(), b.state_dict().values(), c.state_dict().values()):
        assert torch.equal(wa, wb), f"{name} differs between two runs of the same seed"
    assert not all(torch.equal(wa, wc) for wa, wc in zip(a.state_dict().values(), c.state_dict().values()))
    assert metrics_a["test_accuracy"] == metrics_b["test_accuracy"]
    assert set(metrics_a) >= {"train_accuracy", "test_accuracy", "epochs", "train_seconds", "history"}


def test_training_learns_real_digits(mnist_splits):
    splits = _small(mnist_splits, n=2000)
    model, metrics = train_new_model("smallcnn", splits, dataclasses.replace(CFG, epochs=2, lr=0.2), seed=0, progress=False)
    assert metrics["test_accuracy"] > 0.8, metrics  # chance is 0.1
    assert evaluate(model, splits.test, "cpu")["accuracy"] == metrics["test_accuracy"]


def test_augmentation_is_a_crop_and_flip():
    gen = torch.Generator().manual_seed(0)
    x = torch.arange(2 * 3 * 8 * 8, dtype=torch.float32).reshape(2, 3, 8, 8)
    out = augment_batch(x, gen, pad=0)  # no padding: only flips remain
    for k in range(2):
        assert torch.equal(out[k], x[k]) or torch.equal(out[k], x[k].flip(-1))
    out = augment_batch(x, torch.Generator().manual_seed(1), pad=2)
    assert out.shape == x.shape


class _Killed(Exception):
    pass


def test_interrupted_training_resumes_bitwise_identical(mnist_splits, tmp_path, caplog):
    """Kill training after epoch 2 of 4 (its state saved atomically each epoch), resume in a
    fresh call: final weights, optimizer state and history equal an uninterrupted run's bitwise."""
    import logging

    splits = _small(mnist_splits, 300)
    cfg = dataclasses.replace(CFG, epochs=4, augment=True)
    ref, ref_metrics = train_new_model("smallcnn", splits, cfg, seed=5, progress=False)

    state = tmp_path / "train_state.pt"

    def kill_after_two(epoch):
        if epoch == 2:
            raise _Killed

    try:
        train_new_model("smallcnn", splits, cfg, seed=5, progress=False, state_path=state, after_epoch=kill_after_two)
    except _Killed:
        pass
    assert state.exists()
    saved = torch.load(state, weights_only=True)
    assert saved["epoch"] == 2 and {"model", "optimizer", "scheduler", "rng"} <= set(saved)
    assert not list(tmp_path.glob("*.tmp*")), "the state must be written atomically (no temp left)"

    torch.manual_seed(12345)  # a new process: the global RNG is elsewhere; the state restores it
    with caplog.at_level(logging.INFO):
        resumed, metrics = train_new_model("smallcnn", splits, cfg, seed=5, progress=False, state_path=state,
                                           log=logging.getLogger("test-train"))  # fmt: skip
    assert "resumed from" in caplog.text and "after epoch 2/4" in caplog.text
    epoch_lines = [r.getMessage() for r in caplog.records if r.getMessage().startswith("epoch ")]
    assert [m.split(":")[0] for m in epoch_lines] == ["epoch 3/4", "epoch 4/4"], epoch_lines
    assert all("loss" in m and "accuracy" in m and m.endswith(" s") for m in epoch_lines)
    ref_sd, res_sd = ref.state_dict(), resumed.state_dict()
    assert ref_sd.keys() == res_sd.keys()
    for k in ref_sd:
        assert torch.equal(ref_sd[k], res_sd[k]), k
    assert metrics["history"] == ref_metrics["history"]
    assert metrics["test_accuracy"] == ref_metrics["test_accuracy"]


def test_state_of_other_settings_is_not_resumed(mnist_splits, tmp_path, caplog):
    import logging

    splits = _small(mnist_splits, 200)
    cfg = dataclasses.replace(CFG, epochs=2)
    state = tmp_path / "train_state.pt"

    def stop(epoch):
        raise _Killed

    try:
        train_new_model("smallcnn", splits, cfg, seed=1, progress=False, state_path=state, after_epoch=stop)
    except _Killed:
        pass
    other = dataclasses.replace(cfg, lr=0.01)
    with caplog.at_level(logging.INFO):
        net, _ = train_new_model("smallcnn", splits, other, seed=1, progress=False, state_path=state, log=logging.getLogger("t"))
    assert "other settings" in caplog.text and "resumed" not in caplog.text
    fresh, _ = train_new_model("smallcnn", splits, other, seed=1, progress=False)
    for k, v in fresh.state_dict().items():
        assert torch.equal(v, net.state_dict()[k]), k


def test_progress_bar_only_on_a_terminal(mnist_splits, monkeypatch, capsys):
    import io

    splits = _small(mnist_splits, 100)
    monkeypatch.setattr("sys.stderr", io.StringIO())  # a job's log file: not a terminal
    train_new_model("smallcnn", splits, CFG, seed=0)
    import sys

    assert "train seed" not in sys.stderr.getvalue()


def test_determinism_switch_is_on_without_importing_the_compiler():
    """set_determinism turns torch's deterministic kernels on (what the train job relies on) without
    importing torch._inductor / torch._dynamo (~1.9 s per training job)."""
    import subprocess
    import sys

    code = ("import sys, torch\n"
            "from repmatch.backbone.training import set_determinism\n"
            "set_determinism(0, 1)\n"
            "print(torch.are_deterministic_algorithms_enabled(), 'torch._dynamo' in sys.modules, "
            "'torch._inductor' in sys.modules)")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.split() == ["True", "False", "False"]
