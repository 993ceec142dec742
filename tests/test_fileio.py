"""A process SIGKILLed in the middle of a write never leaves a half-written file in place."""
from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from planet.checkpoint import latest_checkpoint, load_checkpoint
from planet.fileio import TEMP_GLOB, atomic_write

WRITER = """
import sys, time, torch
from pathlib import Path
from planet.fileio import atomic_write
path = Path(sys.argv[1])
with atomic_write(path) as f:
    f.write(b"new-start")
    print("writing", flush=True)
    for _ in range(200):  # a slow write: 200 x 1 MB, plenty of time to be killed
        f.write(bytes(1 << 20)); f.flush(); time.sleep(0.01)
"""


def test_atomic_write_replaces_whole_or_not_at_all(tmp_path):
    target = tmp_path / "file.bin"
    target.write_bytes(b"old")
    with pytest.raises(RuntimeError), atomic_write(target) as f:
        f.write(b"half")
        raise RuntimeError("crash")
    assert target.read_bytes() == b"old" and list(tmp_path.glob(TEMP_GLOB)) == []
    with atomic_write(target) as f:
        f.write(b"new")
    assert target.read_bytes() == b"new"


def test_sigkill_mid_write_keeps_the_previous_checkpoint(tmp_path):
    import torch
    from test_checkpoint import tiny_config

    from planet.checkpoint import save_checkpoint
    from planet.config import ModelConfig
    from planet.trainer import Trainer

    cfg = tiny_config(ModelConfig(belief_size=16, state_size=4, embed_size=32, hidden_size=16,
                                  reward_hidden_size=16, cnn_depth=4))
    save_checkpoint(tmp_path, Trainer(cfg, 1, torch.device("cpu")).checkpoint(1, "fp", {}), keep=3)
    good = (tmp_path / "checkpoint_000001.pt").read_bytes()
    victim = tmp_path / "checkpoint_000001.pt"  # the next save overwrites the same name
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(victim)], stdout=subprocess.PIPE, text=True,
                            cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout.readline().strip() == "writing"
    time.sleep(0.3)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert victim.read_bytes() == good  # untouched
    assert len(list(tmp_path.glob(TEMP_GLOB))) == 1  # the litter, named so it is never taken for real
    assert load_checkpoint(victim, "fp").iteration == 1
    assert latest_checkpoint(tmp_path, "fp").iteration == 1
