"""A process SIGKILLed in the middle of a write never leaves a half-written file in place."""
from __future__ import annotations

import os
import resource
import signal
import subprocess
import sys
from contextlib import contextmanager
from pathlib import Path

import pytest

from planet.checkpoint import TrainProgress, latest_checkpoint, load_checkpoint
from planet.fileio import TEMP_GLOB, atomic_write

WRITER = """
import sys
from pathlib import Path
from planet.fileio import atomic_write
path = Path(sys.argv[1])
with atomic_write(path) as f:
    f.write(b"new-start" + bytes(1 << 20)); f.flush()
    print("writing", flush=True)
    sys.stdin.read()  # half-way through the write until the test kills it: no race
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
    plain = tmp_path / "plain.bin"
    plain.write_bytes(b"")
    assert target.stat().st_mode & 0o777 == plain.stat().st_mode & 0o777  # the umask's mode, not 0o600


def test_sigkill_mid_write_keeps_the_previous_checkpoint(tmp_path):
    from test_checkpoint import tiny_config

    from planet.checkpoint import save_checkpoint
    from planet.config import ModelConfig
    from planet.runtime import PLAIN
    from planet.trainer import Trainer

    cfg = tiny_config(ModelConfig(belief_size=16, state_size=4, embed_size=32, hidden_size=16,
                                  reward_hidden_size=16, cnn_depth=4))
    save_checkpoint(tmp_path, Trainer(cfg, 1, PLAIN).checkpoint("fp", TrainProgress(iteration=1)), keep=3)
    good = (tmp_path / "checkpoint_000001.pt").read_bytes()
    victim = tmp_path / "checkpoint_000001.pt"  # the next save overwrites the same name
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(victim)], stdin=subprocess.PIPE,
                            stdout=subprocess.PIPE, text=True, cwd=Path(__file__).resolve().parent.parent)
    assert proc.stdout.readline().strip() == "writing"
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    assert victim.read_bytes() == good  # untouched
    assert len(list(tmp_path.glob(TEMP_GLOB))) == 1  # the litter, named so it is never taken for real
    assert load_checkpoint(victim, "fp").iteration == 1
    assert latest_checkpoint(tmp_path, "fp").iteration == 1


@contextmanager
def file_size_limit(limit: int):
    """A real failed write, as root too: past RLIMIT_FSIZE the kernel refuses (EFBIG; Python ignores
    SIGXFSZ), just as a full disk refuses with ENOSPC."""
    soft, hard = resource.getrlimit(resource.RLIMIT_FSIZE)
    resource.setrlimit(resource.RLIMIT_FSIZE, (limit, hard))
    try:
        yield
    finally:
        resource.setrlimit(resource.RLIMIT_FSIZE, (soft, hard))


def test_a_failed_write_names_the_file_and_keeps_the_previous_one(tmp_path):
    import numpy as np

    from planet.replay import Episode, load_episode, save_episode

    steps = 50
    rng = np.random.default_rng(0)
    episode = Episode(obs=rng.integers(0, 256, (steps + 1, 16, 16, 3), dtype=np.uint8),
                      action=np.zeros((steps, 1), np.float32), reward=np.zeros(steps, np.float32),
                      terminal=np.zeros(steps, bool), truncated=np.zeros(steps, bool))
    path = tmp_path / "episode_000000.npz"
    path.write_bytes(b"previous")
    with file_size_limit(4096), pytest.raises(OSError) as caught:
        save_episode(path, episode)
    assert caught.value.filename == str(path) and "File too large" in caught.value.strerror
    assert path.read_bytes() == b"previous" and list(tmp_path.glob(TEMP_GLOB)) == []
    save_episode(path, episode)  # room again: the same call succeeds
    assert load_episode(path).obs.shape == episode.obs.shape


def test_a_file_where_the_output_folder_must_be_is_named(tmp_path):
    (tmp_path / "checkpoints").write_text("not a folder")
    with pytest.raises(OSError) as caught, atomic_write(tmp_path / "checkpoints" / "checkpoint_000001.pt") as f:
        f.write(b"x")
    assert caught.value.filename == str(tmp_path / "checkpoints" / "checkpoint_000001.pt")


def test_a_stage_that_cannot_write_exits_with_one_line_naming_the_file(tmp_path):
    from test_pipeline import make_project

    project = make_project(tmp_path)
    limit = "import resource; resource.setrlimit(resource.RLIMIT_FSIZE, (2048, resource.RLIM_INFINITY)); "
    out = subprocess.run([sys.executable, "-c", limit + "from stages.seed import main; main()"], cwd=project,
                         capture_output=True, text=True, timeout=120)
    errors = [line for line in out.stderr.splitlines() if line.startswith("error:")]
    assert out.returncode == 2 and "Traceback" not in out.stderr
    assert errors == ["error: data/seed/episode_000000.npz: cannot write (File too large); "
                      "any previous version is kept"]
    assert list((project / "data/seed").glob("*")) == [] and list((project / "data/seed").glob(TEMP_GLOB)) == []
