"""planet/identity.py's code digest, and stages/common.py: what the stages share."""
from __future__ import annotations

import shutil

from planet.identity import ENGINE_DIR, code_digest, engine_modules


def test_code_digest_ignores_comments_and_docstrings_but_not_code(tmp_path):
    engine = tmp_path / "planet"
    shutil.copytree(ENGINE_DIR, engine, ignore=shutil.ignore_patterns("__pycache__"))
    assert code_digest(engine) == code_digest(ENGINE_DIR)

    device = engine / "device.py"
    source = device.read_text()
    assert '"""Median time of one CPU matmul' in source
    edited = source.replace('"""Median time of one CPU matmul', '"""Reworded: median time of one matmul', 1)
    device.write_text("# a new comment\n" + edited.replace("\n\n\n", "\n\n\n\n", 1))
    assert code_digest(engine) == code_digest(ENGINE_DIR)

    assert "BF16_MIN_SPEEDUP = 1.1" in source
    device.write_text(source.replace("BF16_MIN_SPEEDUP = 1.1", "BF16_MIN_SPEEDUP = 1.2"))
    assert code_digest(engine) != code_digest(ENGINE_DIR)


def test_code_digest_counts_only_the_modules_training_imports(tmp_path):
    names = {p.name for p in engine_modules()}
    assert {"run.py", "trainer.py", "loss.py", "model.py", "planner.py", "replay.py", "envs.py", "device.py"} <= names
    assert not names & {"bench.py", "video.py", "cli.py", "trained.py", "plots.py"}
    engine = tmp_path / "planet"
    shutil.copytree(ENGINE_DIR, engine, ignore=shutil.ignore_patterns("__pycache__"))
    bench = engine / "bench.py"
    bench.write_text(bench.read_text() + "\nEXTRA = 1\n")  # a code change the training never runs
    assert code_digest(engine) == code_digest(ENGINE_DIR)
    loss = engine / "loss.py"
    loss.write_text(loss.read_text() + "\nEXTRA = 1\n")
    assert code_digest(engine) != code_digest(ENGINE_DIR)


def test_progress_without_a_terminal_is_plain_lines(capsys):
    from stages.common import LineProgress

    bar = LineProgress(total=3, desc="evaluate", unit="step", every=0.0)
    for _ in range(3):
        bar.update()
    bar.write("a line of the stage's own")
    out = capsys.readouterr().out
    lines = out.splitlines()
    assert "\r" not in out
    assert [line.split(" (")[0] for line in lines[:3]] == [f"evaluate: {i}/3 step" for i in (1, 2, 3)]
    assert out.splitlines()[-1] == "a line of the stage's own"
