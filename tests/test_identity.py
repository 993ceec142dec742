"""planet/identity.py: the code digest that a run's fingerprint carries."""
from __future__ import annotations

import shutil

from planet.identity import ENGINE_DIR, code_digest, engine_modules


def test_code_digest_ignores_comments_and_docstrings_but_not_code(tmp_path):
    engine = tmp_path / "planet"
    shutil.copytree(ENGINE_DIR, engine, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_digest(engine) == code_digest(ENGINE_DIR)

    runtime = engine / "runtime.py"
    source = runtime.read_text()
    assert '"""Median time of one CPU matmul' in source
    edited = source.replace('"""Median time of one CPU matmul', '"""Reworded: median time of one matmul', 1)
    runtime.write_text("# a new comment\n" + edited.replace("\n\n\n", "\n\n\n\n", 1))
    assert code_digest(engine) == code_digest(ENGINE_DIR)

    assert "BF16_MIN_SPEEDUP = 1.1" in source
    runtime.write_text(source.replace("BF16_MIN_SPEEDUP = 1.1", "BF16_MIN_SPEEDUP = 1.2"))
    assert code_digest(engine) != code_digest(ENGINE_DIR)


def test_code_digest_counts_only_the_modules_training_imports(tmp_path):
    names = {p.name for p in engine_modules()}
    assert {"run.py", "trainer.py", "loss.py", "model.py", "planner.py", "replay.py", "envs.py", "runtime.py"} <= names
    assert not names & {"bench.py", "video.py", "cli.py", "trained.py", "plots.py"}
    engine = tmp_path / "planet"
    shutil.copytree(ENGINE_DIR, engine, ignore=shutil.ignore_patterns("__pycache__"))
    bench = engine / "bench.py"
    bench.write_text(bench.read_text() + "\nEXTRA = 1\n")  # a code change the training never runs
    assert code_digest(engine) == code_digest(ENGINE_DIR)
    loss = engine / "loss.py"
    loss.write_text(loss.read_text() + "\nEXTRA = 1\n")
    assert code_digest(engine) != code_digest(ENGINE_DIR)
