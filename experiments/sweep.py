"""A sweep across machines: one DVC experiment per combination of `-S` values, each run as a Ray task.

    MLFLOW_TRACKING_URI=http://tracking-host:5000 python -m experiments.sweep -S seed=0,1,2 -S env.id=A,B

Ray only places the trials; DVC, git and MLflow keep the record. Each trial, on the node Ray gives it:

    git clone <git remote> && git checkout <this commit>     # its own copy of the committed project
    dvc exp run --name <trial> -S key=value ...               # the real pipeline, logging to MLflow
    dvc push && dvc exp push origin <trial>                   # outputs to the DVC remote, then the experiment

Outputs go up before the experiment's git ref, so a trial found on the git remote is complete: a rerun
of the same sweep skips it. A failed trial is named with its error line; the others finish.
The DVC remote is the project's default one (`dvc remote add -d`, committed); the tracking server is
MLFLOW_TRACKING_URI, which every node must reach. See docs/team.md.
"""
from __future__ import annotations

import argparse
import dataclasses
import hashlib
import itertools
import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.parse
from pathlib import Path


@dataclasses.dataclass(frozen=True)
class Trial:
    name: str
    """The DVC experiment's name, made from the values that vary (and a digest of the fixed ones)."""
    settings: tuple[str, ...]
    """`key=value` strings, passed to `dvc exp run` as `-S key=value`."""


@dataclasses.dataclass(frozen=True)
class SweepConfig:
    settings: tuple[tuple[str, tuple[str, ...]], ...]
    """Each `-S key=v1,v2,...` as (key, values); the trials are their cartesian product."""
    address: str = "auto"
    """The Ray cluster: `auto` (the one started on this machine) or `host:port` of its head."""
    git_remote: str = "origin"
    """The git remote every node clones from and pushes experiments to."""
    prefix: str = "sweep"
    """Start of every trial's name; a new prefix makes a new set of trials."""
    cpus: float = 1.0
    """CPUs Ray reserves for each trial; its torch uses that many threads (OMP_NUM_THREADS)."""
    gpus: float = 0.0
    """GPUs Ray reserves for each trial."""
    report: str = ""
    """Where to write a JSON list of the trials' results (name, status, node), if anywhere."""

    def __post_init__(self) -> None:
        if not self.settings:
            raise SweepError("give at least one -S key=value[,value...]")
        if self.cpus <= 0 or self.gpus < 0:
            raise SweepError(f"--cpus must be > 0 and --gpus >= 0, got {self.cpus} and {self.gpus}")


class SweepError(RuntimeError):
    """A mistake in the sweep's input or set-up: one line, before any trial starts."""


def parse_setting(text: str) -> tuple[str, tuple[str, ...]]:
    key, sep, values = text.partition("=")
    parts = tuple(v.strip() for v in values.split(","))
    if not sep or not key.strip() or not all(parts):
        raise SweepError(f"-S {text!r}: expected key=value or key=v1,v2,... (e.g. -S seed=0,1,2)")
    return key.strip(), parts


def _ref_safe(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]+", "-", text).replace("..", ".").strip("-.") or "x"


def make_trials(cfg: SweepConfig) -> list[Trial]:
    """The cartesian product of the settings, each named `<prefix>-<key><value>-...` after what varies."""
    keys = [key for key, _ in cfg.settings]
    if len(set(keys)) != len(keys):
        raise SweepError(f"a key is given twice with -S: {sorted(k for k in keys if keys.count(k) > 1)[0]}")
    varying = [key for key, values in cfg.settings if len(values) > 1]
    leaves = [key.rsplit(".", 1)[-1] for key in varying]
    labels = dict(zip(varying, leaves if len(set(leaves)) == len(leaves) else varying))
    fixed = sorted(f"{key}={values[0]}" for key, values in cfg.settings if len(values) == 1)
    # Fixed settings change every trial's result, so they change its name too (a digest keeps it short).
    suffix = [hashlib.sha256("\n".join(fixed).encode()).hexdigest()[:6]] if fixed else []
    trials = []
    for combo in itertools.product(*(values for _, values in cfg.settings)):
        chosen = dict(zip(keys, combo))
        parts = [_ref_safe(f"{labels[key]}{chosen[key]}") for key in varying]
        trials.append(Trial("-".join([_ref_safe(cfg.prefix), *parts, *suffix]),
                            tuple(f"{key}={value}" for key, value in chosen.items())))
    names = [t.name for t in trials]
    if len(set(names)) != len(names):
        raise SweepError("two trials would share a name; give values that differ after removing / and spaces")
    return trials


def _run(cmd: list[str], cwd: Path | str, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True)


def _last_error(out: subprocess.CompletedProcess) -> str:
    return error_line(out.stdout + "\n" + out.stderr, f"exit status {out.returncode}")


def error_line(text: str, fallback: str) -> str:
    """The line that says what went wrong: a stage's `error:`, else DVC's `ERROR:`, else the last line."""
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    stage_errors = [line for line in lines if line.startswith("error:")]
    tool_errors = [line for line in lines if line.startswith(("ERROR", "fatal:"))]
    return (stage_errors or tool_errors or lines or [fallback])[-1][:300]


def run_trial(name: str, settings: list[str], repo_url: str, baseline: str, tracking_uri: str,
              login: dict[str, str]) -> dict:
    """One trial on a Ray node, in a clone removed afterwards, logging to `tracking_uri` with the
    sweep's MLflow `login` (MLflow's environment variables); -> {name, ok, node, seconds, error}."""
    import shutil
    import tempfile

    import ray

    start = time.monotonic()
    node = ray.get_runtime_context().get_node_id()
    cpus = ray.get_runtime_context().get_assigned_resources().get("CPU", 1)
    # The node's `python` and `dvc` are the ones of the environment its Ray worker runs in; torch takes
    # as many threads as the CPUs Ray reserved for this trial.
    env = {**os.environ, **login, "MLFLOW_TRACKING_URI": tracking_uri, "OMP_NUM_THREADS": str(max(1, int(cpus))),
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ.get('PATH', '')}"}
    workdir = tempfile.mkdtemp(prefix=f"planet-{name}-")
    steps = [["git", "clone", "-q", repo_url, "."], ["git", "checkout", "-q", baseline],
             ["dvc", "exp", "run", "--name", name, *(arg for s in settings for arg in ("-S", s))],
             ["dvc", "push", "-q"], ["dvc", "exp", "push", "origin", name]]
    try:
        for cmd in steps:
            out = _run(cmd, workdir, env)
            if out.returncode != 0:
                return {"name": name, "ok": False, "node": node, "seconds": time.monotonic() - start,
                        "error": f"{' '.join(cmd[:3])}: {_last_error(out)}"}
        return {"name": name, "ok": True, "node": node, "seconds": time.monotonic() - start, "error": ""}
    finally:
        shutil.rmtree(workdir, ignore_errors=True)


def _git(*args: str) -> str:
    out = _run(["git", *args], Path.cwd())
    if out.returncode != 0:
        raise SweepError(f"git {' '.join(args)}: {_last_error(out)}")
    return out.stdout.strip()


def check_project(cfg: SweepConfig) -> tuple[str, str]:
    """-> (git remote URL, baseline commit); the trials can only run what the remote already has."""
    if not Path("dvc.yaml").exists():
        raise SweepError("run the sweep from the project's root (no dvc.yaml here)")
    url = _git("remote", "get-url", cfg.git_remote)
    if _git("status", "--porcelain", "--untracked-files=no"):
        raise SweepError("the project has uncommitted changes; commit and push them, trials run the commit")
    baseline = _git("rev-parse", "HEAD")
    _git("fetch", "-q", cfg.git_remote)
    if not _git("branch", "-r", "--contains", baseline):
        raise SweepError(f"commit {baseline[:8]} is not on git remote {cfg.git_remote}; `git push` it first")
    out = _run(["git", "show", f"{baseline}:.dvc/config"], Path.cwd())
    if "remote =" not in out.stdout:
        raise SweepError("the committed .dvc/config has no default DVC remote; `dvc remote add -d NAME URL`, "
                         "commit and push it")
    return url, baseline


def check_tracking() -> str:
    """The shared MLflow server every trial logs to; a file store on this machine would not be shared."""
    uri = os.environ.get("MLFLOW_TRACKING_URI", "")
    parsed = urllib.parse.urlparse(uri)
    if parsed.scheme not in ("http", "https") or not parsed.hostname:
        raise SweepError(f"set MLFLOW_TRACKING_URI to the team's MLflow server (http://host:port), got {uri!r}")
    from experiments.tracking import server_problem

    problem = server_problem(uri)  # every trial would fail on it
    if problem:
        raise SweepError(problem)
    return uri


def check_ray_address(address: str) -> None:
    """A head that cannot be reached fails here in one line; `ray.init` would retry for many minutes."""
    if address == "auto":  # Ray itself says at once when no cluster runs on this machine
        return
    host, sep, port = address.removeprefix("ray://").rpartition(":")
    if not sep or not port.isdigit():
        raise SweepError(f"--address {address!r}: expected auto or host:port of the Ray head")
    try:
        socket.create_connection((host, int(port)), timeout=10).close()
    except OSError as err:
        raise SweepError(f"the Ray head at {address} is unreachable: {err.strerror or err}") from None


def finished_trials(cfg: SweepConfig) -> set[str]:
    """Names of this commit's experiments already on the git remote (pushed only once complete)."""
    out = _run(["dvc", "exp", "list", cfg.git_remote, "--name-only"], Path.cwd())
    if out.returncode != 0:
        raise SweepError(f"dvc exp list {cfg.git_remote}: {_last_error(out)}")
    return {line.strip() for line in out.stdout.splitlines() if line.strip()}


def node_names() -> dict[str, str]:
    """Ray node id -> `head` or `worker-<id prefix>`, for the report."""
    import ray

    return {n["NodeID"]: "head" if "node:__internal_head__" in n.get("Resources", {}) else f"worker-{n['NodeID'][:8]}"
            for n in ray.nodes()}


def sweep(cfg: SweepConfig) -> list[dict]:
    """Submit every unfinished trial to the Ray cluster and wait for all; -> one result dict per trial."""
    trials = make_trials(cfg)
    repo_url, baseline = check_project(cfg)
    tracking_uri = check_tracking()
    from experiments.tracking import LOGIN

    login = {name: os.environ[name] for name in LOGIN if name in os.environ}  # who runs the sweep logs every trial
    check_ray_address(cfg.address)
    done = finished_trials(cfg)
    results = [{"name": t.name, "ok": True, "node": "", "seconds": 0.0, "error": "", "skipped": True}
               for t in trials if t.name in done]
    for result in results:
        print(f"sweep: {result['name']}: already on {cfg.git_remote}, skipped", flush=True)
    todo = [t for t in trials if t.name not in done]
    if not todo:
        return results

    import ray

    if __name__ != "__main__":  # imported: send run_trial by value, as nodes need not have this checkout
        ray.cloudpickle.register_pickle_by_value(sys.modules[__name__])
    try:
        ray.init(address=cfg.address, namespace="planet-sweep", logging_level="warning", log_to_driver=False)
    except Exception as err:  # Ray raises ConnectionError, RuntimeError, ... for a missing cluster
        reason = str(err).strip().splitlines()[0]
        hint = " (start one with `ray start --head`, or give --address host:port)" if cfg.address == "auto" else ""
        raise SweepError(f"cannot join the Ray cluster at {cfg.address}: {reason}{hint}") from None
    try:
        names = node_names()
        task = ray.remote(run_trial)
        pending = {task.options(name=t.name, num_cpus=cfg.cpus, num_gpus=cfg.gpus, max_retries=0)
                   .remote(t.name, list(t.settings), repo_url, baseline, tracking_uri, login): t for t in todo}
        print(f"sweep: {len(todo)} trials submitted to Ray ({cfg.cpus:g} CPU, {cfg.gpus:g} GPU each) from "
              f"{baseline[:8]}", flush=True)
        while pending:
            ready, _ = ray.wait(list(pending), num_returns=1)
            trial = pending.pop(ready[0])
            try:
                result = ray.get(ready[0])
            except Exception as err:  # the worker or its node died: the trial failed, the sweep goes on
                result = {"name": trial.name, "ok": False, "node": "", "seconds": 0.0,
                          "error": str(err).strip().splitlines()[0][:300]}
            result["node_name"] = names.get(result["node"], result["node"][:8])
            result["skipped"] = False
            where = f"on node {result['node_name']} in {result['seconds']:.0f} s"
            status = f"finished {where}" if result["ok"] else f"FAILED {where}: {result['error']}"
            print(f"sweep: {trial.name}: {status}", flush=True)
            results.append(result)
    finally:
        ray.shutdown()
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m experiments.sweep", description=__doc__.split("\n")[0])
    parser.add_argument("-S", dest="settings", action="append", default=[], metavar="KEY=V1,V2",
                        help="a params.yaml key and its values; every combination is one trial")
    parser.add_argument("--address", default="auto", help="the Ray cluster (default: auto)")
    parser.add_argument("--git-remote", default="origin", help="git remote to clone from and push to")
    parser.add_argument("--prefix", default="sweep", help="start of every trial's experiment name")
    parser.add_argument("--cpus", type=float, default=1.0, help="CPUs per trial (default 1)")
    parser.add_argument("--gpus", type=float, default=0.0, help="GPUs per trial (default 0)")
    parser.add_argument("--report", default="", help="write the results as JSON here")
    args = parser.parse_args(argv)
    try:
        cfg = SweepConfig(tuple(parse_setting(s) for s in args.settings), args.address, args.git_remote,
                          args.prefix, args.cpus, args.gpus, args.report)
        results = sweep(cfg)
    except SweepError as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("error: interrupted; rerun the same command to run the unfinished trials", file=sys.stderr)
        return 2
    if cfg.report:
        Path(cfg.report).write_text(json.dumps(results, indent=1))
    return print_summary("sweep", results)


def print_summary(prefix: str, results: list[dict]) -> int:
    """`<prefix>: N finished, M skipped, K failed: names`; -> the exit status (1 if any failed)."""
    failed = [r["name"] for r in results if not r["ok"]]
    skipped = sum(r["skipped"] for r in results)
    print(f"{prefix}: {len(results) - skipped - len(failed)} finished, {skipped} skipped, {len(failed)} failed"
          + (f": {', '.join(failed)}" if failed else ""))
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
