"""Stage `check`: validate the whole params.yaml before any other stage touches its outputs.

DVC deletes a stage's outputs just before running it, so a bad value found inside `train` would
already have cost the previous model. This stage runs first whenever params.yaml changes; it writes
a constant marker, so when the params are valid the stages after it see no change in it and only
the stages whose own params changed rerun."""
from __future__ import annotations

from pathlib import Path

from planet.fileio import write_text
from stages.common import entry_point, load_params

MARKER = Path("runs/params.ok")


@entry_point
def main() -> None:
    load_params()
    write_text(MARKER, "params.yaml is valid\n")


if __name__ == "__main__":
    main()
