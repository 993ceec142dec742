"""Wheels for a GPU machine with no package index: what `planet/` needs beyond its torch, numpy and
scipy, for its Python, with dm_control slimmed to what the suite's tasks load.

    python scripts/gpu_wheels.py --out gpu-wheels [--python 3.12] [--budget-mib 40]
    # there: python3 -m pip install --no-index --no-deps gpu-wheels/*.whl

Versions are this project's pins (requirements.lock). dm_control's wheel is 56 MB, almost all of it
the locomotion walkers and soccer, the dog's meshes and test assets, which the six DMC tasks never
read: every file under those folders that is not Python is dropped (the modules stay, so every
import still works) and the wheel's RECORD is rewritten to match. Fails if the set exceeds the budget.
"""
from __future__ import annotations

import argparse
import base64
import csv
import hashlib
import io
import re
import subprocess
import sys
import zipfile
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
# Not on the GPU image (its torch, numpy, scipy, lxml, absl-py, protobuf, imageio, pyyaml, tqdm are).
# mujoco names mujoco-studio (its viewer app, 11 MB with its web assets) as a dependency, but neither
# mujoco, dm_control nor shimmy imports it; installing with --no-deps leaves it out.
PACKAGES = ["gymnasium", "Farama-Notifications", "mujoco", "mujoco-core", "glfw", "PyOpenGL",
            "dm-control", "dm-env", "dm-tree", "labmaze", "Shimmy", "cloudpickle"]
# Data the suite's tasks never load.
UNUSED_DATA = ("dm_control/locomotion/", "dm_control/suite/dog_assets/", "dm_control/mujoco/testing/",
               "dm_control/blender/", "dm_control/mjcf/test_assets/", "dm_control/suite/all_domains.png")


def pinned_versions(lock: Path) -> dict[str, str]:
    pins = {}
    for line in lock.read_text().splitlines():
        name, sep, version = line.split("#")[0].strip().partition("==")
        if sep:
            pins[re.sub(r"[-_.]+", "-", name).lower()] = version.strip()
    return pins


def _record_hash(data: bytes) -> str:
    return "sha256=" + base64.urlsafe_b64encode(hashlib.sha256(data).digest()).rstrip(b"=").decode()


def slim_wheel(source: Path, target: Path, drop: tuple[str, ...] = UNUSED_DATA) -> int:
    """Copy the wheel without the non-Python files under `drop`; -> how many files were dropped."""
    dropped = 0
    with zipfile.ZipFile(source) as wheel, zipfile.ZipFile(target, "w", zipfile.ZIP_DEFLATED) as slim:
        record_name = next(n for n in wheel.namelist() if n.endswith(".dist-info/RECORD"))
        kept_rows = []
        for info in wheel.infolist():
            name = info.filename
            if name == record_name:
                continue
            if name.startswith(drop) and not name.endswith(".py"):
                dropped += 1
                continue
            data = wheel.read(name)
            slim.writestr(info, data)
            kept_rows.append([name, _record_hash(data), str(len(data))])
        out = io.StringIO()
        csv.writer(out, lineterminator="\n").writerows([*kept_rows, [record_name, "", ""]])
        slim.writestr(record_name, out.getvalue())
    return dropped


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, required=True)
    parser.add_argument("--python", default="3.12", help="the GPU machine's Python (default 3.12)")
    parser.add_argument("--budget-mib", type=float, default=40.0, help="fail above this many MiB (default 40)")
    args = parser.parse_args(argv)
    pins = pinned_versions(ROOT / "requirements.lock")
    wanted = [f"{p}=={pins[re.sub(r'[-_.]+', '-', p).lower()]}" for p in PACKAGES]
    args.out.mkdir(parents=True, exist_ok=True)
    download = args.out / "download"
    cmd = [sys.executable, "-m", "pip", "download", "--quiet", "--no-deps", "--only-binary=:all:",
           "--python-version", args.python, "--implementation", "cp", "--platform", "manylinux2014_x86_64",
           "--platform", "manylinux_2_17_x86_64", "--platform", "manylinux_2_28_x86_64", "-d", str(download), *wanted]
    if subprocess.run(cmd).returncode != 0:
        print("error: pip download failed (see above)", file=sys.stderr)
        return 2
    for wheel in sorted(download.glob("*.whl")):
        target = args.out / wheel.name
        if wheel.name.startswith("dm_control-"):
            print(f"{wheel.name}: dropped {slim_wheel(wheel, target)} unused data files")
        else:
            target.write_bytes(wheel.read_bytes())
        wheel.unlink()
    download.rmdir()
    total = sum(p.stat().st_size for p in args.out.glob("*.whl")) / 2**20
    for wheel in sorted(args.out.glob("*.whl")):
        print(f"{wheel.stat().st_size / 2**20:7.2f} MiB  {wheel.name}")
    print(f"{total:7.2f} MiB in all (budget {args.budget_mib:g})")
    return 0 if total <= args.budget_mib else 1


if __name__ == "__main__":
    sys.exit(main())
