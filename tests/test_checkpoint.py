import pickle

import numpy as np
import pytest
import torch
from test_replay import make_episode
from test_trainer import FP32

from planet.checkpoint import (
    CheckpointError,
    TrainProgress,
    checkpoint_path,
    latest_checkpoint,
    list_checkpoints,
    load_checkpoint,
    save_checkpoint,
)
from planet.config import Config, EnvConfig, TrainConfig, load_config
from planet.replay import SequenceSampler
from planet.runtime import PLAIN, Runtime
from planet.trainer import Trainer


def tiny_config(tiny_model_cfg):
    return Config(env=EnvConfig(id="PlanetCounter-v0", image_size=16, action_repeat=1), model=tiny_model_cfg,
                  train=TrainConfig(steps_per_iteration=3, batch_size=2, seq_len=4),
                  runtime=FP32)


def test_round_trip_restores_rngs_so_next_losses_match(tmp_path, tiny_model_cfg):
    cfg = tiny_config(tiny_model_cfg)
    episodes = [make_episode(12, size=16, start=s) for s in (0, 50)]
    first = Trainer(cfg, 1, PLAIN)
    first.train_iteration(SequenceSampler(episodes, 4, first.rng), 0)
    save_checkpoint(tmp_path, first.checkpoint("abc", TrainProgress(iteration=1, episodes=2)), keep=3)
    expected = first.train_iteration(SequenceSampler(episodes, 4, first.rng), 1)

    second = Trainer(cfg, 1, PLAIN)
    ckpt = load_checkpoint(checkpoint_path(tmp_path, 1), fingerprint="abc")
    assert ckpt.iteration == 1 and ckpt.progress == TrainProgress(iteration=1, episodes=2)
    assert load_config(ckpt.config) == first.cfg and ckpt.action_low == [-1.0] and ckpt.action_high == [1.0]
    second.restore(ckpt)
    assert second.train_iteration(SequenceSampler(episodes, 4, second.rng), 1) == expected


def test_keeps_the_newest_k_and_skips_bad_ones(tmp_path, tiny_model_cfg):
    trainer = Trainer(tiny_config(tiny_model_cfg), 1, PLAIN)
    for it in range(1, 6):
        save_checkpoint(tmp_path, trainer.checkpoint("fp", TrainProgress(iteration=it)), keep=3)
    assert [p.name for p in list_checkpoints(tmp_path)] == [f"checkpoint_00000{i}.pt" for i in (3, 4, 5)]
    newest = checkpoint_path(tmp_path, 5)
    newest.write_bytes(newest.read_bytes()[:1000])  # truncated, as by a crash mid-copy
    warnings = []
    assert latest_checkpoint(tmp_path, "fp", warn=warnings.append).iteration == 4
    assert "checkpoint_000005.pt" in warnings[0]
    assert latest_checkpoint(tmp_path, "other", warn=warnings.append) is None  # fingerprint mismatch


def test_truncated_and_foreign_files_name_the_file(tmp_path):
    bad = tmp_path / "checkpoint_000001.pt"
    bad.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError, match="checkpoint_000001.pt: not a loadable checkpoint"):
        load_checkpoint(bad)
    torch.save({"weights": torch.zeros(2)}, bad)
    with pytest.raises(CheckpointError, match="checkpoint_000001.pt: not a PlaNet checkpoint"):
        load_checkpoint(bad)


class Payload:
    def __reduce__(self):
        import pathlib
        return (pathlib.Path.touch, (pathlib.Path(MARKER),))


MARKER = ""


def test_malicious_pickle_is_never_run(tmp_path):
    global MARKER
    MARKER = str(tmp_path / "pwned")
    path = tmp_path / "checkpoint_000001.pt"
    torch.save({"format": "planet-checkpoint/2", "evil": Payload()}, path)
    with pytest.raises(CheckpointError, match="checkpoint_000001.pt"):
        load_checkpoint(path)
    assert not (tmp_path / "pwned").exists()
    # The payload is real: plain pickle would run it.
    with open(tmp_path / "plain.pkl", "wb") as f:
        pickle.dump(Payload(), f)
    with open(tmp_path / "plain.pkl", "rb") as f:
        pickle.load(f)
    assert (tmp_path / "pwned").exists()


def test_nan_weights_are_never_saved(tmp_path, tiny_model_cfg):
    trainer = Trainer(tiny_config(tiny_model_cfg), 1, PLAIN)
    with torch.no_grad():
        trainer.model.reward.net[0].weight[0, 0] = np.nan
    with pytest.raises(CheckpointError, match="not finite"):
        save_checkpoint(tmp_path, trainer.checkpoint("fp", TrainProgress(iteration=1)), keep=2)
    assert list_checkpoints(tmp_path) == [] and list(tmp_path.iterdir()) == []


def test_the_same_checkpoint_is_the_same_bytes(tmp_path, tiny_model_cfg):
    """DVC hashes model files: a checkpoint written again after loading it must be the same bytes."""
    trainer = Trainer(tiny_config(tiny_model_cfg), 1, PLAIN)
    ckpt = trainer.checkpoint("fp", TrainProgress(iteration=1))
    ckpt.progress.rows.append({"iteration": 1, "recon": 2.0})
    save_checkpoint(tmp_path / "a", ckpt, keep=1)
    reloaded = load_checkpoint(checkpoint_path(tmp_path / "a", 1))  # fresh objects, as a resumed run has
    save_checkpoint(tmp_path / "b", reloaded, keep=1)
    assert (checkpoint_path(tmp_path / "a", 1).read_bytes() == checkpoint_path(tmp_path / "b", 1).read_bytes())


def test_every_unusable_checkpoint_is_refused_in_one_line_that_says_why(tmp_path, tiny_model_cfg):
    from planet.checkpoint import FORMAT

    path = tmp_path / "checkpoint_000001.pt"
    path.write_bytes(b"")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"{path}: not a loadable checkpoint (EOFError)"  # no message: the error's name
    path.write_bytes(b"not a zip")
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value).startswith(f"{path}: not a loadable checkpoint (") and "\n" not in str(err.value)
    torch.save({"weights": torch.zeros(2)}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == f"{path}: not a PlaNet checkpoint (format {FORMAT} expected)"
    torch.save({"format": "planet-checkpoint/0"}, path)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(path)
    assert str(err.value) == (f"{path}: written by an older version of this project (planet-checkpoint/0, "
                              f"{FORMAT} expected); train again")
    trainer = Trainer(tiny_config(tiny_model_cfg), 1, PLAIN)
    saved = save_checkpoint(tmp_path, trainer.checkpoint("abc", TrainProgress(iteration=2)), keep=2)
    with pytest.raises(CheckpointError) as err:
        load_checkpoint(saved, fingerprint="xyz")
    assert str(err.value) == f"{saved}: made under other params, code or data (fingerprint abc, this run xyz)"


def test_a_checkpoint_saved_on_a_device_loads_on_the_cpu_and_back(tmp_path, tiny_model_cfg, device):
    trainer = Trainer(tiny_config(tiny_model_cfg), 1, Runtime(device))
    saved = save_checkpoint(tmp_path, trainer.checkpoint("abc", TrainProgress(iteration=2)), keep=2)
    on_cpu = load_checkpoint(saved, map_location="cpu")
    assert {tensor.device.type for tensor in on_cpu.model.values()} == {"cpu"}
    back = Trainer(tiny_config(tiny_model_cfg), 1, Runtime(device))
    back.restore(load_checkpoint(saved, map_location=device))
    mine, theirs = trainer.model.state_dict(), back.model.state_dict()
    assert all(torch.equal(mine[k], theirs[k]) and theirs[k].device.type == device.type for k in mine)


def test_a_checkpoint_loads_onto_the_device_asked_for(tmp_path, tiny_model_cfg):
    trainer = Trainer(tiny_config(tiny_model_cfg), 1, PLAIN)
    saved = save_checkpoint(tmp_path, trainer.checkpoint("abc", TrainProgress(iteration=2)), keep=2)
    weights = load_checkpoint(saved, map_location="meta").model
    assert {tensor.device.type for tensor in weights.values()} == {"meta"}
