"""`make benchmark`: the paper's DeepMind Control Suite tasks x seeds, as DVC experiments placed by Ray.

    python -m experiments.benchmark [-S task=cheetah-run,walker-walk] [-S seed=0,1,2] [--parallel 1]

Each trial is `dvc exp run --name dmc-<task>-seed<N> $(cat profiles/<task>.args) -S seed=N
-S runtime.threads=T`, run in its own working copy `<benchmark dir>/dmc-<task>-seed<N>/`, a clone of
this commit outside the project's git tree (default `../planet-benchmark`, or `--dir`). The working
copy is kept: a trial that was interrupted (Ctrl-C, `kill`, the machine going away) continues from its
newest checkpoint when the command runs again. A finished trial's results are copied to
`results/dmc-<task>-seed<N>/` and it is skipped from then on. Ray runs the trials, on this machine
when no `--address` is given; each asks for T CPUs. Progress is printed every `--every` seconds.
On this machine every trial logs to MLFLOW_TRACKING_URI, or else to this project's store, where
`make ui` shows it as `dmc-<task>-seed<N>`; on a cluster, to MLFLOW_TRACKING_URI as the nodes set it."""
from __future__ import annotations

import argparse
import csv
import dataclasses
import fcntl
import itertools
import json
import os
import platform
import shutil
import signal
import statistics
import subprocess
import sys
import time
from pathlib import Path

from experiments.sweep import error_line, print_summary

TASKS = ("cartpole-swingup", "reacher-easy", "cheetah-run", "finger-spin", "cup-catch", "walker-walk")
SEEDS = ("0", "1", "2")
DONE = ".benchmark-done"  # in a working copy: its `dvc exp run` finished
PGID = ".benchmark-pgid"  # in a working copy: the process group of the trial running in it
# working-copy file -> name in results/<trial>/
RESULT_FILES = {"params.yaml": "params.yaml", "plots/train.csv": "train.csv", "plots/timing.csv": "timing.csv",
                "metrics/train.json": "train.json", "metrics/eval.json": "eval.json",
                "metrics/dream.json": "dream.json", "plots/train.png": "train.png", "plots/eval.gif": "eval.gif",
                "dream/gifs/dream_0.gif": "dream_0.gif", "dream/error.png": "error.png"}


class BenchmarkError(RuntimeError):
    """A mistake in the command's input or set-up: one line, before any trial starts."""


@dataclasses.dataclass(frozen=True)
class Trial:
    task: str
    seed: str

    @property
    def name(self) -> str:
        return f"dmc-{self.task}-seed{self.seed}"


def parse_selection(settings: list[str], profiles: Path) -> list[Trial]:
    """`-S task=a,b -S seed=0,1` (defaults: every task with a profile, seeds 0-2) -> the trials."""
    chosen = {"task": TASKS, "seed": SEEDS}
    for text in settings:
        key, sep, values = text.partition("=")
        if key not in chosen or not sep or not all(v.strip() for v in values.split(",")):
            raise BenchmarkError(f"-S {text!r}: expected task=NAME[,NAME...] or seed=N[,N...]")
        chosen[key] = tuple(v.strip() for v in values.split(","))
    for task in chosen["task"]:
        if not (profiles / f"{task}.args").is_file():
            known = ", ".join(sorted(p.stem for p in profiles.glob("*.args")))
            raise BenchmarkError(f"task {task!r} has no profiles/{task}.args (known: {known})")
    for seed in chosen["seed"]:
        if not seed.isdigit():
            raise BenchmarkError(f"seed {seed!r}: must be a non-negative integer")
    return [Trial(t, s) for t, s in itertools.product(chosen["task"], chosen["seed"])]


def _run(cmd: list[str], cwd: Path | str) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, capture_output=True, text=True)


def last_error(log: Path) -> str:
    return error_line(log.read_text(errors="replace") if log.exists() else "", "no output")


def recorded_threads(copy: Path) -> int | None:
    """The thread count a started trial runs with (its working copy's params.yaml), so that a rerun
    keeps it: another count would continue the run but not bit for bit."""
    import yaml

    if not (copy / "checkpoints").is_dir() or not any((copy / "checkpoints").glob("*.pt")):
        return None
    return int(yaml.safe_load((copy / "params.yaml").read_text())["runtime"]["threads"])


def stop_leftover(copy: Path) -> None:
    """A trial process left running by an earlier benchmark command (its driver was killed) is stopped
    the way Ctrl-C stops it: SIGINT to its process group, which `dvc repro` ignores while its stage
    finishes its interrupt (nothing half-written) and then releases its locks. SIGTERM would kill DVC
    at once and leave a stale lock that the next `dvc repro` warns about."""
    marker = copy / PGID
    if not marker.exists():
        return
    pgid = int(marker.read_text())
    for sig, wait in ((signal.SIGINT, 60), (signal.SIGTERM, 10), (signal.SIGKILL, 5)):
        try:
            os.killpg(pgid, sig)
        except ProcessLookupError:
            break
        for _ in range(wait):
            time.sleep(1)
            try:
                os.killpg(pgid, 0)
            except ProcessLookupError:
                break
    marker.unlink(missing_ok=True)


def apply_settings(params: Path, settings: list[str]) -> None:
    """`key=value` settings into params.yaml, as `dvc exp run -S` does (values read as YAML, comments kept)."""
    from ruamel.yaml import YAML

    yaml = YAML()
    data = yaml.load(params.read_text())
    for setting in settings:
        dotted, _, value = setting.partition("=")
        *parents, key = dotted.split(".")
        node = data
        for part in parents:
            node = node[part]
        node[key] = yaml.load(value) if value else value
    with params.open("w") as f:
        yaml.dump(data, f)


def _logged(cmd: list[str], cwd: Path, env: dict[str, str], log: Path) -> int:
    """Run `cmd` appending to `log`; its own process group (recorded in the working copy), so that the
    driver alone gets Ctrl-C and stops each trial cleanly (`stop_leftover`)."""
    with log.open("a") as out:
        out.write(f"\n== {time.strftime('%Y-%m-%d %H:%M:%S')} {' '.join(cmd)}\n")
        out.flush()
        # Ray's worker threads block SIGINT and a child inherits its thread's signal mask: unblocked
        # for the child, so that the trial stops on SIGINT as a stage does on Ctrl-C.
        mask = signal.pthread_sigmask(signal.SIG_UNBLOCK, {signal.SIGINT})
        try:
            proc = subprocess.Popen(cmd, cwd=cwd, env=env, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        finally:
            signal.pthread_sigmask(signal.SIG_SETMASK, mask)
        (cwd / PGID).write_text(str(proc.pid))
        code = proc.wait()
    (cwd / PGID).unlink(missing_ok=True)
    return code


def run_trial(trial: Trial, project: str, commit: str, folder: str, threads: int, tracking: str | None) -> dict:
    """One trial, in its kept working copy, logging to the MLflow store `tracking` (None: the node's
    MLFLOW_TRACKING_URI, or the copy's own); -> {name, ok, error, seconds, files (results/ name -> bytes)}."""
    copy, log = Path(folder) / trial.name, Path(folder) / f"{trial.name}.log"
    start = time.monotonic()
    if not (copy / ".git").exists():
        fresh = Path(folder) / f".{trial.name}.cloning"
        shutil.rmtree(fresh, ignore_errors=True)
        for cmd in (["git", "clone", "-q", project, str(fresh)], ["git", "-C", str(fresh), "checkout", "-q", commit]):
            out = _run(cmd, folder)
            if out.returncode != 0:
                error = (out.stderr or out.stdout).strip()[:300]
                return {"name": trial.name, "ok": False, "seconds": 0.0, "error": error}
        fresh.rename(copy)  # a half-made clone never looks like a working copy
    stop_leftover(copy)
    if not (copy / DONE).exists():
        threads = recorded_threads(copy) or threads
        profile = (copy / "profiles" / f"{trial.task}.args").read_text().split()
        settings = [*(v for flag, v in zip(profile[::2], profile[1::2]) if flag == "-S"), f"seed={trial.seed}",
                    f"runtime.threads={threads}"]
        apply_settings(copy / "params.yaml", settings)
        env = {**os.environ, "OMP_NUM_THREADS": str(threads), "DVC_EXP_NAME": trial.name,  # the MLflow run's name
               "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}",
               **({"MLFLOW_TRACKING_URI": tracking} if tracking else {})}
        # `dvc repro`, not `dvc exp run`: an experiment run first checks the baseline's outputs out,
        # which deletes an interrupted trial's checkpoints; repro resumes from them. Once it finishes,
        # `dvc exp save` records the working copy as the experiment <trial>.
        for cmd in (["dvc", "repro"], ["dvc", "exp", "save", "--force", "--name", trial.name]):
            code = _logged(cmd, copy, env, log)
            if code != 0:
                return {"name": trial.name, "ok": False, "seconds": time.monotonic() - start, "error": last_error(log)}
        (copy / DONE).write_text(json.dumps({"finished": time.strftime("%Y-%m-%dT%H:%M:%S"), "threads": threads}))
    files = {name: (copy / src).read_bytes() for src, name in RESULT_FILES.items() if (copy / src).exists()}
    run = {"commit": _run(["git", "rev-parse", "HEAD"], copy).stdout.strip(), "machine": cpu_name(),
           **json.loads((copy / DONE).read_text())}
    files["run.json"] = (json.dumps(run, indent=1) + "\n").encode()
    return {"name": trial.name, "ok": True, "seconds": time.monotonic() - start, "error": "", "files": files}


def cpu_name() -> str:
    try:
        names = [line.split(":", 1)[1].strip() for line in Path("/proc/cpuinfo").read_text().splitlines()
                 if line.startswith("model name")]
        flags = next(line for line in Path("/proc/cpuinfo").read_text().splitlines() if line.startswith("flags"))
        isa = "avx512_bf16" if "avx512_bf16" in flags else "avx512f" if "avx512f" in flags else "avx2"
        return f"{names[0]} ({isa}, {len(names)} cores)"
    except (OSError, StopIteration, IndexError):
        return platform.processor() or platform.machine()


def progress_line(trial: Trial, copy: Path) -> str:
    """`cheetah-run seed 0: iteration 12/95, 54 min in, about 5.1 h left` from the working copy's files."""
    timing = copy / "plots" / "timing.csv"
    rows = list(csv.DictReader(timing.open())) if timing.exists() else []
    total = 95
    try:
        import yaml

        total = int(yaml.safe_load((copy / "params.yaml").read_text())["train"]["iterations"])
    except (OSError, KeyError, TypeError, ValueError):
        pass
    if not rows:  # DVC removes the curves when the stage starts; the stage rewrites them after an iteration
        saved = sorted((copy / "checkpoints").glob("checkpoint_*.pt"))
        if saved:
            return f"{trial.task} seed {trial.seed}: continuing after iteration {int(saved[-1].stem[11:])} of {total}"
        return f"{trial.task} seed {trial.seed}: starting (seed episodes, compiling)"
    done, elapsed = int(rows[-1]["iteration"]), float(rows[-1]["wall_time_s"])
    ends = [float(row["wall_time_s"]) for row in rows[-6:]]
    # The median of the recent iterations' times: one iteration that spanned a pause (a stopped
    # process, a suspended machine) does not stretch the estimate.
    per_iteration = statistics.median(b - a for a, b in zip(ends, ends[1:])) if len(ends) > 1 else elapsed / done
    left = (total - done) * per_iteration * 1.05  # and about 5% more for evaluate and dream
    return (f"{trial.task} seed {trial.seed}: iteration {done}/{total}, {elapsed / 60:.0f} min of training, "
            f"about {left / 3600:.1f} h left")


def benchmark(trials: list[Trial], folder: Path, parallel: int, address: str | None, every: float) -> list[dict]:
    project = Path.cwd()
    if _run(["git", "status", "--porcelain", "--untracked-files=no"], project).stdout.strip():
        raise BenchmarkError("the project has uncommitted changes; commit them, trials run the commit")
    commit = _run(["git", "rev-parse", "HEAD"], project).stdout.strip()
    folder.mkdir(parents=True, exist_ok=True)
    lock = (folder / ".lock").open("w")
    try:
        fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        raise BenchmarkError(f"another benchmark command is running on {folder}/") from None
    results = []
    todo = []
    for trial in trials:
        if (Path("results") / trial.name / "eval.json").exists():
            print(f"benchmark: {trial.name}: in results/, skipped", flush=True)
            results.append({"name": trial.name, "ok": True, "skipped": True})
        else:
            todo.append(trial)
    if not todo:
        return results
    threads = max(1, (os.cpu_count() or 1) // parallel)
    # On this machine, one store for all trials (the project's unless MLFLOW_TRACKING_URI names
    # another); a cluster's nodes log where their own environment says.
    from experiments.tracking import tracking_uri  # here: Ray's workers need not import torch

    tracking = None if address else tracking_uri()
    import ray

    ray.init(address=address, num_cpus=None if address else threads * parallel, include_dashboard=False,
             logging_level="warning", log_to_driver=False, namespace="planet-benchmark")
    signal.signal(signal.SIGTERM, _interrupt)  # after ray.init, which installs a handler that aborts
    running = {}
    try:
        task = ray.remote(run_trial)
        pending = {task.options(name=t.name, num_cpus=threads, max_retries=0)
                   .remote(t, str(project), commit, str(folder), threads, tracking): t for t in todo}
        store = tracking or "each node's MLFLOW_TRACKING_URI"
        print(f"benchmark: {len(todo)} trials, {parallel} at a time, {threads} threads each, from {commit[:8]}; "
              f"working copies in {folder}/; MLflow runs in {store}", flush=True)
        running = {t.name: folder / t.name for t in todo}
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1, timeout=every)
            if not ready:
                for trial in pending.values():
                    if (folder / trial.name / PGID).exists():
                        print(f"benchmark: {progress_line(trial, folder / trial.name)}", flush=True)
                continue
            trial = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as err:  # the worker died: the trial failed, the others go on
                result = {"name": trial.name, "ok": False, "seconds": 0.0,
                          "error": str(err).strip().splitlines()[0][:300]}
            if result["ok"]:
                out = Path("results") / trial.name
                out.mkdir(parents=True, exist_ok=True)
                for name, data in result.pop("files").items():
                    (out / name).write_bytes(data)
                print(f"benchmark: {trial.name}: finished, results in {out}/", flush=True)
            else:
                print(f"benchmark: {trial.name}: FAILED: {result['error']} (log: {folder / trial.name}.log)",
                      flush=True)
            result["skipped"] = False
            results.append(result)
    except KeyboardInterrupt:
        for copy in running.values():
            stop_leftover(copy)
        raise
    finally:
        ray.shutdown()
    return results


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.benchmark", description=__doc__.split("\n")[0])
    parser.add_argument("-S", dest="select", action="append", default=[], metavar="task=A,B|seed=0,1",
                        help="tasks and seeds to run (default: all six tasks, seeds 0, 1, 2)")
    parser.add_argument("--dir", default=os.environ.get("PLANET_BENCHMARK_DIR", "../planet-benchmark"),
                        help="where the trials' working copies live (default ../planet-benchmark)")
    parser.add_argument("--parallel", type=int, default=1,
                        help="trials at a time; each gets cores / parallel threads (default 1)")
    parser.add_argument("--address", default=None, help="a Ray cluster's head (default: Ray on this machine)")
    parser.add_argument("--every", type=float, default=300.0, help="seconds between progress lines (default 300)")
    args = parser.parse_args(argv)
    signal.signal(signal.SIGTERM, _interrupt)  # `kill` stops the command the way Ctrl-C does
    # Started in the background (`nohup make benchmark &`), SIGINT is ignored, and an ignored signal
    # stays ignored in every process started below: the trials could not be stopped as Ctrl-C stops them.
    signal.signal(signal.SIGINT, signal.default_int_handler)
    try:
        if not Path("dvc.yaml").exists():
            raise BenchmarkError("run it from the project's root (no dvc.yaml here)")
        if args.parallel < 1:
            raise BenchmarkError(f"--parallel must be at least 1, got {args.parallel}")
        trials = parse_selection(args.select, Path("profiles"))
        results = benchmark(trials, Path(args.dir).resolve(), args.parallel, args.address, args.every)
    except BenchmarkError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; run the same command again to continue every unfinished trial from its "
              "newest checkpoint", file=sys.stderr)
        return 2
    if any(r["ok"] and not r["skipped"] for r in results):
        print("benchmark: `python scripts/benchmark_table.py` puts the table in the README and redraws "
              "results/dmc-benchmark.png from results/")
    return print_summary("benchmark", results)


if __name__ == "__main__":
    sys.exit(main())
