"""Checkpoints never run code, never pass damage off as state, and never lose the last one."""

import errno
import os
import subprocess

import pytest
import torch
from train_helpers import SMALL, parrot, write_text

from parrot.errors import ParrotError
from parrot.training import checkpoint as ck
from parrot.training.loop import Hook
from parrot.training.runner import train

FAST = [s for s in SMALL if s != "--set"]
STEPS = ["train.steps=6", "train.checkpoint_every=2", "train.eval_every=3"]


class Planted:
    """An object whose unpickling would create `marker`: what an attacker plants."""

    def __init__(self, marker):
        self.marker = str(marker)

    def __reduce__(self):
        return (os.makedirs, (self.marker,))


def _small_checkpoint(path):
    model = torch.nn.Linear(3, 2)
    opt = torch.optim.AdamW(model.parameters())
    model(torch.randn(2, 3)).sum().backward()
    opt.step()
    ck.save_checkpoint(path, model, opt, 4, {"generator": torch.Generator().get_state()})
    return path


def test_a_planted_pickle_is_refused_and_never_runs(tmp_path):
    marker = tmp_path / "pwned"
    torch.save({"format": ck.FORMAT, "step": Planted(marker)}, tmp_path / "checkpoint.pt")
    with pytest.raises(ParrotError, match="could run code"):
        ck.read_checkpoint(tmp_path / "checkpoint.pt")
    assert not marker.exists()


def test_resuming_a_run_with_a_planted_pickle_is_one_sentence_and_runs_nothing(tmp_path):
    data = write_text(tmp_path / "text.txt")
    run = tmp_path / "run"
    overrides = [x for s in (*FAST, *STEPS) for x in ("--set", s)]
    assert parrot("train", "--preset", "tiny", "--data", str(data), *overrides, "--quiet",
                  "--out", str(run)).returncode == 0
    marker = tmp_path / "pwned"
    torch.save({"step": Planted(marker)}, run / "checkpoint.pt")
    resumed = parrot("train", "--preset", "tiny", "--out", str(run), "--resume", "--quiet")
    assert resumed.returncode == 2 and "could run code" in resumed.stderr
    assert "Traceback" not in resumed.stderr and not marker.exists()


def test_the_rng_and_optimizer_state_round_trip_through_weights_only_loading(tmp_path):
    path = _small_checkpoint(tmp_path / "c.pt")
    state = ck.read_checkpoint(path)
    import random

    import numpy as np
    before = (random.random(), np.random.rand(), torch.rand(1).item())
    ck.set_rng_state(state["rng"])
    assert state["step"] == 4 and set(state["optimizer"]) == {"state", "param_groups"}
    ck.set_rng_state(ck.rng_state())  # a fresh snapshot restores without error too
    assert before != ()


@pytest.mark.parametrize("keep", [0.1, 0.5, 0.99])
def test_a_truncated_checkpoint_is_reported_not_loaded(tmp_path, keep):
    path = _small_checkpoint(tmp_path / "c.pt")
    raw = path.read_bytes()
    path.write_bytes(raw[: int(len(raw) * keep)])
    with pytest.raises(ParrotError, match="truncated or corrupt"):
        ck.read_checkpoint(path)


def test_a_checkpoint_whose_contents_changed_fails_its_checksum(tmp_path):
    path = _small_checkpoint(tmp_path / "c.pt")
    state = torch.load(path, weights_only=True)
    state["model"]["weight"][0, 0] += 1e-3  # one changed weight, digest left as it was
    torch.save(state, path)
    with pytest.raises(ParrotError, match="checksum does not match"):
        ck.read_checkpoint(path)


def test_a_flipped_byte_is_caught_or_changes_nothing(tmp_path):
    path = _small_checkpoint(tmp_path / "c.pt")
    raw = bytearray(path.read_bytes())
    original = ck.state_digest(ck.read_checkpoint(path))
    caught = 0
    for at in range(0, len(raw), max(1, len(raw) // 97)):
        damaged = bytearray(raw)
        damaged[at] ^= 0x40
        path.write_bytes(bytes(damaged))
        try:
            state = ck.read_checkpoint(path)
        except ParrotError:
            caught += 1
            continue
        # a flip in bytes nothing reads (zip padding, record names' slack) changes no state
        assert ck.state_digest(state) == original
    assert caught > 0


def _fail_on_write(calls):
    real = torch.save

    def save(obj, path, *args, **kwargs):
        calls.append(path)
        if len(calls) == 2:  # the second checkpoint: half written, then the disk is full
            with open(path, "wb") as f:
                f.write(b"PK\x03\x04 half a checkpoint")
            raise OSError(errno.ENOSPC, "No space left on device")
        return real(obj, path, *args, **kwargs)

    return save


def test_a_full_disk_mid_checkpoint_keeps_the_previous_one_and_stops_in_one_sentence(
        tmp_path, monkeypatch):
    data = write_text(tmp_path / "text.txt")
    calls: list = []
    monkeypatch.setattr(ck.torch, "save", _fail_on_write(calls))
    run = tmp_path / "run"
    with pytest.raises(ParrotError, match="No space left on device.*previous checkpoint is "
                                          "intact"):
        train("tiny", run, data=[data], overrides=[*FAST, *STEPS], show_progress=False)
    assert ck.read_checkpoint(run / "checkpoint.pt")["step"] == 2
    assert [p.name for p in run.iterdir() if p.name.endswith(".tmp")] == []
    monkeypatch.undo()
    whole = train("tiny", tmp_path / "whole", data=[data], overrides=[*FAST, *STEPS],
                  show_progress=False)
    resumed = train("tiny", run, resume=True, show_progress=False)
    assert resumed.final_val_loss == whole.final_val_loss  # no work lost beyond step 2


class FillDisk(Hook):
    """After the first checkpoint, fill the filesystem so the next one cannot fit."""

    def __init__(self, mount):
        self.mount, self.done = mount, False

    def on_checkpoint(self, run_dir):
        if not self.done:
            self.done = True
            free = os.statvfs(self.mount).f_bavail * os.statvfs(self.mount).f_frsize
            with open(self.mount / "filler", "wb") as f:
                f.write(b"\0" * max(0, free - 4096))


def test_a_real_full_tmpfs_keeps_the_previous_checkpoint(tmp_path):
    mount = tmp_path / "small"
    mount.mkdir()
    if subprocess.run(["mount", "-t", "tmpfs", "-o", "size=4m", "tmpfs", str(mount)],
                      capture_output=True).returncode != 0:
        pytest.skip("mounting a tmpfs needs root")
    try:
        data = write_text(tmp_path / "text.txt")
        with pytest.raises(ParrotError, match="No space left on device"):
            train("tiny", mount / "run", data=[data], overrides=[*FAST, *STEPS],
                  hooks=[FillDisk(mount)], show_progress=False)
        assert ck.read_checkpoint(mount / "run" / "checkpoint.pt")["step"] == 2
    finally:
        subprocess.run(["umount", "-l", str(mount)], check=False)


def test_a_damaged_sharded_checkpoint_fails_its_manifest_checksum(tmp_path):
    from parrot.training.sharded import latest_folder

    data = write_text(tmp_path / "text.txt")
    run = tmp_path / "run"
    train("tiny", run, data=[data], overrides=[*FAST, *STEPS, "train.strategy=fsdp"],
          show_progress=False)
    folder = latest_folder(run)
    shard = next(folder.glob("*.distcp"))
    raw = bytearray(shard.read_bytes())
    raw[len(raw) // 2] ^= 0x01
    shard.write_bytes(bytes(raw))
    with pytest.raises(ParrotError, match="checksum does not match the manifest"):
        latest_folder(run)
