"""stages/common.py: what the stages share."""
from __future__ import annotations


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
