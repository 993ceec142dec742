"""stages/common.py: what the stages share."""
from __future__ import annotations

import shutil

from stages.common import ENGINE_DIR, code_digest


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
