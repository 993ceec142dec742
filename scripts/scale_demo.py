"""The team set-up end to end on one machine, every part real and on 127.0.0.1 (`make scale-demo`).

In temporary folders it brings up a throwaway PostgreSQL, the MLflow server on it with MLflow's
basic-auth app (artifacts served through the server; users alice and bob made by the admin; no login
and a wrong password refused), a Ray head node and a second Ray node with token authentication, a bare
git remote and a local-directory DVC remote. The sweep without a login and with a wrong password stops
in one line; as alice it runs a two-trial tiny sweep (`python -m experiments.sweep -S seed=0,1`) across the
two nodes, then again with `seed=0,1,oops` (two skipped, the third named as failed). Then it checks
what bob, a teammate, gets:

- `dvc exp pull` brings both experiments; `dvc exp show` lists them with their metrics;
- an experiment made a branch, cloned afresh and `dvc pull`ed has its seed episodes, checkpoints and
  model, `dvc repro` there runs nothing, and evaluating the pulled model works;
- the MLflow server on PostgreSQL holds both trials' runs, each with its eval video; a run's model,
  registered, is evaluated from an empty folder by `runs:/` and `models:/` (with no login: one line);
  bob may not delete alice's run.

Then it tears everything down, checks that none of its processes is left, and prints one summary line
last. It needs root (PostgreSQL runs as the `postgres` user; the network namespace) and runs itself in
a new network namespace that holds only loopback, so no traffic leaves 127.0.0.1.
"""
from __future__ import annotations

import argparse
import base64
import glob
import json
import os
import secrets
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
import urllib.error
import urllib.request
from pathlib import Path

import yaml

ROOT = Path(__file__).resolve().parent.parent
PROJECT_FILES = ["planet", "stages", "experiments", "dvc.yaml", "params.yaml", ".gitignore", ".dvcignore",
                 ".dvc/config", ".dvc/.gitignore"]
# A pipeline small enough for a demo on two CPU cores: 32-px Pendulum, a tiny model, two iterations.
DEMO_PARAMS = {
    "env.image_size": 32, "data.seed_episodes": 2,
    "model.belief_size": 32, "model.state_size": 8, "model.embed_size": 64, "model.hidden_size": 32,
    "model.reward_hidden_size": 32, "model.cnn_depth": 8,
    "train.iterations": 2, "train.steps_per_iteration": 3, "train.batch_size": 4, "train.seq_len": 8,
    "train.checkpoint_every": 1, "train.keep_checkpoints": 2,
    "planner.candidates": 32, "planner.top_k": 4, "planner.horizon": 4, "planner.iterations": 2,
    "evaluate.episodes": 1, "dream.episodes": 1, "dream.context_frames": 3, "dream.dream_steps": 10,
    "runtime.device": "cpu", "runtime.precision": "fp32", "runtime.compile": False,
}
TRIALS = ("sweep-seed0", "sweep-seed1")


class DemoError(RuntimeError):
    """A step of the demo did not give what it should: one line, then teardown."""


def say(message: str) -> None:
    print(f"scale-demo: {message}", flush=True)


def postgres_bin() -> Path | None:
    found = sorted(glob.glob("/usr/lib/postgresql/*/bin/initdb"))
    return Path(found[-1]).parent if found else None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def run(cmd: list[str], cwd: Path | None = None, env: dict[str, str] | None = None, timeout: float = 900,
        check: bool = True) -> subprocess.CompletedProcess:
    out = subprocess.run(cmd, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout)
    if check and out.returncode != 0:
        last = [line for line in (out.stdout + out.stderr).splitlines() if line.strip()] or ["(no output)"]
        raise DemoError(f"`{' '.join(cmd[:4])}` exited {out.returncode}: {last[-1].strip()[:300]}")
    return out


# The auth app's settings: a logged-in teammate reads and logs everywhere (EDIT), and only a run's
# creator or an admin deletes it (MANAGE); requests without a valid login get 401.
AUTH_INI = """[mlflow]
default_permission = EDIT
database_uri = {database}
admin_username = admin
"""
LOGIN = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")


def api(url: str, path: str, login: tuple[str, str] | None = None, body: dict | None = None,
        method: str | None = None) -> tuple[int, str]:
    """One request to the MLflow server's REST API -> (HTTP status, body)."""
    request = urllib.request.Request(f"{url}{path}", method=method, data=json.dumps(body).encode() if body else None,
                                     headers={"Content-Type": "application/json"})
    if login:
        request.add_header("Authorization", "Basic " + base64.b64encode(":".join(login).encode()).decode())
    try:
        with urllib.request.urlopen(request, timeout=30) as answer:
            return answer.status, answer.read().decode()
    except urllib.error.HTTPError as err:
        return err.code, err.read().decode()


NODES_ALIVE = ("import ray, sys; ray.init(address=sys.argv[1], logging_level='error', log_to_driver=False); "
               "print(sum(n['Alive'] for n in ray.nodes()))")


class Services:
    """The processes the demo starts, each in its own session so that teardown finds all of it."""

    def __init__(self, tmp: Path, env: dict[str, str]) -> None:
        self.tmp, self.env, self.sessions, self.leaders, self.pg_data = tmp, env, [], [], None

    def spawn(self, cmd: list[str], log: str, leader_stops_all: bool = False,
              secrets_env: dict[str, str] | None = None) -> subprocess.Popen:
        """`leader_stops_all`: SIGTERM to the first process alone stops the rest in order (`ray start --block`;
        signalled all at once, a Ray node's processes wait 30 s on each other). `secrets_env`: for this
        process alone."""
        with open(self.tmp / log, "w") as out:
            proc = subprocess.Popen(cmd, env={**self.env, **(secrets_env or {})}, stdout=out, stderr=subprocess.STDOUT,
                                    start_new_session=True)
        self.sessions.append(proc.pid)
        if leader_stops_all:
            self.leaders.append(proc.pid)
        return proc

    def postgres(self, pg_bin: Path, port: int) -> str:
        data = self.tmp / "pg"
        data.mkdir()
        shutil.chown(data, "postgres", "postgres")
        as_postgres = ["runuser", "-u", "postgres", "--"]
        run([*as_postgres, str(pg_bin / "initdb"), "-D", str(data), "--auth=trust", "-U", "postgres"])
        self.pg_data = data
        run([*as_postgres, str(pg_bin / "pg_ctl"), "-D", str(data), "-l", str(data / "server.log"), "-w", "start",
             "-o", f"-p {port} -k {data} -c listen_addresses=127.0.0.1"])
        for database in ("mlflow", "mlflow_auth"):  # runs; the auth app's users and permissions
            run([*as_postgres, str(pg_bin / "createdb"), "-h", "127.0.0.1", "-p", str(port), "-U", "postgres",
                 database])
        return f"postgresql+psycopg2://postgres@127.0.0.1:{port}"

    def mlflow(self, database: str, port: int, admin_password: str) -> str:
        """MLflow's server with its basic-auth app (the team command in docs/team.md): runs in database
        `mlflow`, users and permissions in `mlflow_auth`, user `admin` created on first start."""
        (self.tmp / "auth.ini").write_text(AUTH_INI.format(database=f"{database}/mlflow_auth"))
        # One worker and no job runner: 2 processes instead of 13.
        self.env["MLFLOW_SERVER_ENABLE_JOB_EXECUTION"] = "false"
        self.spawn([str(Path(sys.executable).parent / "mlflow"), "server", "--app-name", "basic-auth",
                    "--backend-store-uri", f"{database}/mlflow",
                    "--serve-artifacts", "--artifacts-destination", str(self.tmp / "mlflow-artifacts"),
                    "--host", "127.0.0.1", "--port", str(port), "--workers", "1"], "mlflow.log",
                   secrets_env={"MLFLOW_AUTH_CONFIG_PATH": str(self.tmp / "auth.ini"),
                                "MLFLOW_AUTH_ADMIN_PASSWORD": admin_password,
                                "MLFLOW_FLASK_SERVER_SECRET_KEY": secrets.token_hex(16)})
        url = f"http://127.0.0.1:{port}"
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            try:
                urllib.request.urlopen(f"{url}/health", timeout=2)
                return url
            except OSError:
                time.sleep(1)
        raise DemoError(f"the MLflow server did not answer on {url} in 300 s; see {self.tmp / 'mlflow.log'}")

    def ray_nodes(self, port: int) -> str:
        ray = str(Path(sys.executable).parent / "ray")
        common = ["--num-cpus=1", "--object-store-memory=100000000", "--block", "--disable-usage-stats",
                  f"--temp-dir={self.tmp / 'ray'}"]  # trials pass no data through Ray: a small object store
        self.spawn([ray, "start", "--head", "--node-ip-address=127.0.0.1", f"--port={port}",
                    "--include-dashboard=false", *common], "ray-head.log", leader_stops_all=True)
        address = f"127.0.0.1:{port}"
        self.wait_for_nodes(address, 1)
        self.spawn([ray, "start", f"--address={address}", "--node-ip-address=127.0.0.1", *common], "ray-node.log",
                   leader_stops_all=True)
        self.wait_for_nodes(address, 2)
        stranger = run([sys.executable, "-c", NODES_ALIVE, address], env={**self.env, "RAY_AUTH_TOKEN": "0" * 64},
                       timeout=300, check=False)
        if stranger.returncode == 0 or "InvalidAuthToken" not in stranger.stderr:
            raise DemoError(f"the Ray cluster at {address} let in a client with another token")
        return address

    def wait_for_nodes(self, address: str, count: int) -> None:
        deadline = time.monotonic() + 300
        while time.monotonic() < deadline:
            out = run([sys.executable, "-c", NODES_ALIVE, address], env=self.env, timeout=120, check=False)
            if out.returncode == 0 and out.stdout.strip().splitlines()[-1:] == [str(count)]:
                return
            time.sleep(2)
        raise DemoError(f"the Ray cluster at {address} did not reach {count} nodes in 300 s")

    def stop(self) -> list[str]:
        """Stop everything; -> the command lines of any process still alive afterwards."""
        for pid in reversed(self.sessions):  # the second Ray node, the head, then the MLflow server
            try:
                if pid in self.leaders:
                    os.kill(pid, signal.SIGTERM)
                else:
                    os.killpg(pid, signal.SIGTERM)
            except ProcessLookupError:
                pass
        if self.pg_data is not None:
            run(["runuser", "-u", "postgres", "--", str(postgres_bin() / "pg_ctl"), "-D", str(self.pg_data),
                 "-m", "fast", "-w", "stop"], check=False)
        deadline = time.monotonic() + 30
        while self.leftovers() and time.monotonic() < deadline:
            time.sleep(1)
        for pid in self.leftover_pids():  # a straggler that ignored SIGTERM
            try:
                os.kill(pid, signal.SIGKILL)
            except ProcessLookupError:
                pass
        time.sleep(1)
        return self.leftovers()

    def leftover_pids(self) -> list[int]:
        """Processes in a session the demo started, or whose command line names its folder."""
        pids = []
        for stat in glob.glob("/proc/[0-9]*/stat"):
            try:
                pid = int(stat.split("/")[2])
                fields = Path(stat).read_text().rsplit(")", 1)[1].split()
                cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            except (OSError, ValueError, IndexError):
                continue
            ours = int(fields[3]) in self.sessions or str(self.tmp) in cmdline  # fields[3]: the session id
            if ours and fields[0] != "Z" and pid != os.getpid():
                pids.append(pid)
        return pids

    def leftovers(self) -> list[str]:
        lines = []
        for pid in self.leftover_pids():
            try:
                lines.append(Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode()[:120])
            except OSError:
                pass
        return lines


def make_project(path: Path, params_file: Path | None, dvc_remote: Path, git_remote: Path, env: dict) -> None:
    """The committed project (tiny params), its DVC remote the default one, pushed to the bare git remote."""
    for name in PROJECT_FILES:
        src, dst = ROOT / name, path / name
        dst.parent.mkdir(parents=True, exist_ok=True)
        if src.is_dir():
            shutil.copytree(src, dst, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy(src, dst)
    if params_file is not None:
        shutil.copy(params_file, path / "params.yaml")
    else:
        params = yaml.safe_load((path / "params.yaml").read_text())
        for key, value in DEMO_PARAMS.items():
            section, leaf = key.split(".")
            params[section][leaf] = value
        (path / "params.yaml").write_text(yaml.safe_dump(params, sort_keys=False))
    run(["git", "init", "-q", "-b", "main"], path, env)
    run(["dvc", "remote", "add", "-d", "storage", str(dvc_remote)], path, env)  # the team's would be s3:// or ssh://
    run(["git", "add", "-A"], path, env)
    run(["git", "commit", "-qm", "project"], path, env)
    run(["git", "init", "-q", "--bare", "-b", "main", str(git_remote)], path, env)
    run(["git", "remote", "add", "origin", str(git_remote)], path, env)
    run(["git", "push", "-q", "origin", "main"], path, env)


def ran_stages(output: str) -> list[str]:
    return [line.split("'")[1] for line in output.splitlines() if line.startswith("Running stage")]


def check_fresh_clones(tmp: Path, git_remote: Path, env: dict) -> None:
    """What a teammate gets back from the remotes alone."""
    fresh = tmp / "fresh"
    run(["git", "clone", "-q", str(git_remote), str(fresh)], env=env)
    run(["dvc", "exp", "pull", "origin"], fresh, env)  # this commit's experiments, as docs/team.md says
    table = json.loads(run(["dvc", "exp", "show", "--json"], fresh, env).stdout)
    shown = {rev["name"]: rev for row in table for exp in (row.get("experiments") or []) for rev in exp["revs"]}
    for name in TRIALS:
        metrics = json.dumps(shown.get(name, {}).get("data", {}).get("metrics", {}))
        if "return_mean" not in metrics:
            raise DemoError(f"`dvc exp show` in a fresh clone lacks {name} or its eval metrics")
    say(f"fresh clone: dvc exp pull + dvc exp show list {', '.join(TRIALS)} with their metrics")
    run(["dvc", "exp", "branch", TRIALS[1], "team/seed1"], fresh, env)
    run(["git", "push", "-q", "origin", "team/seed1"], fresh, env)

    teammate = tmp / "teammate"
    run(["git", "clone", "-q", "-b", "team/seed1", str(git_remote), str(teammate)], env=env)
    run(["dvc", "pull", "-q"], teammate, env)
    for pattern in ("data/seed/episode_*.npz", "checkpoints/*.pt", "models/model.pt", "data/replay/*.npz"):
        if not list(teammate.glob(pattern)):
            raise DemoError(f"`dvc pull` in a fresh clone did not restore {pattern}")
    stages = ran_stages(run(["dvc", "repro"], teammate, env).stdout)
    if stages:
        raise DemoError(f"`dvc repro` after `dvc pull` should run nothing, ran {stages}")
    run([sys.executable, "-m", "stages.evaluate"], teammate, env)
    say("fresh clone of branch team/seed1: dvc pull restored episodes, checkpoints and model; dvc repro ran "
        "nothing; python -m stages.evaluate on the pulled model worked")


def team_logins(url: str, admin: tuple[str, str]) -> dict[str, tuple[str, str]]:
    """Two teammates' users, made by the admin; a request with no login and one with a wrong password
    must be refused."""
    logins = {}
    for name in ("alice", "bob"):
        logins[name] = (name, secrets.token_urlsafe(16))
        user = dict(zip(("username", "password"), logins[name]))
        status, text = api(url, "/api/2.0/mlflow/users/create", admin, user)
        if status != 200:
            raise DemoError(f"the admin could not create MLflow user {name}: {status} {text.strip()[:200]}")
    search = "/api/2.0/mlflow/experiments/search?max_results=1"
    for who, login in (("no login", None), ("a wrong password", ("alice", "not-alices-password"))):
        status, _ = api(url, search, login)
        if status != 401:
            raise DemoError(f"the MLflow server answered a request with {who} with {status}, not 401")
    if api(url, search, logins["alice"])[0] != 200:
        raise DemoError("the MLflow server refused user alice with her password")
    return logins


def check_refused_sweep(sweep: list[str], project: Path, env: dict) -> str:
    """The sweep with no login, then with a wrong password: exit 2 and one line each, before any trial."""
    said = []
    for login in ({}, dict(zip(LOGIN, ("alice", "not-alices-password")))):
        out = run(sweep, project, {**env, **login}, check=False)
        lines = out.stderr.strip().splitlines()
        if out.returncode != 2 or len(lines) != 1 or "MLflow tracking server" not in lines[0]:
            raise DemoError(f"the sweep with login {login or 'none'} should stop in one line, exited {out.returncode}: "
                            f"{out.stderr.strip()[-300:]}")
        said.append(lines[0])
    return " / ".join(f"`{line}`" for line in said)


def check_mlflow(url: str, tmp: Path, login: tuple[str, str], env: dict) -> None:
    """As a teammate (`login`): the trials' runs and videos, their models evaluated from an empty folder by
    `runs:/` and, registered, by `models:/`; no login is one line; another user's run cannot be deleted."""
    import mlflow
    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    os.environ.update(zip(LOGIN, login))  # MLflow's client reads the login from the environment
    client = MlflowClient(tracking_uri=url)
    experiment = client.get_experiment_by_name("planet")
    runs = client.search_runs([experiment.experiment_id]) if experiment else []
    by_trial = {r.data.tags.get("dvc.exp_name"): r for r in runs if "mlflow.parentRunId" not in r.data.tags}
    for name in TRIALS:
        if name not in by_trial:
            raise DemoError(f"the MLflow server has no run tagged dvc.exp_name={name}")
        video = client.download_artifacts(by_trial[name].info.run_id, "evaluate/eval.mp4", str(tmp / name))
        if Path(video).read_bytes()[4:8] != b"ftyp":
            raise DemoError(f"{name}'s evaluate/eval.mp4 from the MLflow server is not an MP4 file")
    say(f"MLflow on PostgreSQL, read as bob: runs {', '.join(by_trial[n].info.run_name for n in TRIALS)} for "
        f"{', '.join(TRIALS)}, each eval.mp4 downloaded through the server")

    run_id = by_trial[TRIALS[0]].info.run_id
    mlflow.set_tracking_uri(url)
    version = mlflow.register_model(f"runs:/{run_id}/model", "planet-demo").version
    empty = tmp / "empty"
    empty.mkdir()
    planet_env = {**env, "MLFLOW_TRACKING_URI": url, **dict(zip(LOGIN, login))}
    said = []
    for model in (f"runs:/{run_id}/model", f"models:/planet-demo/{version}"):
        out = run([sys.executable, "-m", "planet", "evaluate", model, "--episodes", "1"], empty, planet_env)
        said.append(f"{model.split(':')[0]}: {out.stdout.strip().splitlines()[-1].split(' over ')[0]}")
    anonymous = {k: v for k, v in planet_env.items() if k not in LOGIN}
    out = run([sys.executable, "-m", "planet", "evaluate", f"runs:/{run_id}/model"], empty, anonymous, check=False)
    if out.returncode != 2 or "asks for a login" not in out.stderr or len(out.stderr.strip().splitlines()) != 1:
        raise DemoError(f"`planet evaluate runs:/...` with no login should be one line, said {out.stderr[-300:]}")
    say(f"bob registered {TRIALS[0]}'s model as planet-demo v{version}; `planet evaluate` from an empty folder: "
        f"{'; '.join(said)}; with no login: `{out.stderr.strip()}`")
    try:
        client.delete_run(run_id)
    except MlflowException as err:
        if err.error_code != "PERMISSION_DENIED":
            raise
    else:
        raise DemoError(f"bob deleted alice's run {run_id}")
    say("bob may not delete alice's run (PERMISSION_DENIED)")


def demo(tmp: Path, params_file: Path | None, services: Services, env: dict) -> str:
    pg_bin = postgres_bin()
    database = services.postgres(pg_bin, free_port())
    admin = ("admin", secrets.token_urlsafe(16))
    url = services.mlflow(database, free_port(), admin[1])
    say(f"PostgreSQL {pg_bin.parent.name} and the MLflow server at {url} with basic auth are up")
    logins = team_logins(url, admin)
    say("users alice and bob made by admin; requests with no login and with a wrong password: 401")
    address = services.ray_nodes(free_port())
    say(f"Ray head and a second node at {address}, 1 CPU each, token authentication on (another token: refused)")
    project, git_remote = tmp / "project", tmp / "remote.git"
    make_project(project, params_file, tmp / "dvc-remote", git_remote, env)
    sweep_env = {**env, "MLFLOW_TRACKING_URI": url}
    sweep = [sys.executable, "-m", "experiments.sweep", "-S", "seed=0,1", "--address", address,
             "--report", str(tmp / "sweep.json")]
    say(f"the sweep with no login, then a wrong password: exit 2, {check_refused_sweep(sweep, project, sweep_env)}")
    sweep_env.update(zip(LOGIN, logins["alice"]))  # alice runs the sweep
    started = time.monotonic()
    out = run(sweep, project, sweep_env, check=False)
    print(out.stdout, end="", flush=True)
    if out.returncode != 0:
        said = (out.stdout.strip().splitlines() or out.stderr.strip().splitlines() or [""])[-1]
        raise DemoError(f"the sweep exited {out.returncode}: {said}")  # its summary names the failed trials
    seconds = time.monotonic() - started
    report = json.loads((tmp / "sweep.json").read_text())
    nodes = {r["name"]: r["node_name"] for r in report}
    if sorted(nodes) != sorted(TRIALS) or len(set(nodes.values())) != 2:
        raise DemoError(f"the two trials should run on two Ray nodes, ran on {nodes}")
    # Again, with a third value that the check stage rejects: the two done are skipped, the bad one is named.
    rerun = run([*sweep[:4], "seed=0,1,oops", *sweep[5:]], project, sweep_env, check=False)
    last = (rerun.stdout.strip().splitlines() or [""])[-1]
    if rerun.returncode != 1 or last != "sweep: 0 finished, 2 skipped, 1 failed: sweep-seedoops":
        raise DemoError(f"the sweep rerun with seed=0,1,oops should skip two and fail one, said: {last}")
    failure = next(line for line in rerun.stdout.splitlines() if line.startswith("sweep: sweep-seedoops"))
    say(f"the sweep again with seed=0,1,oops: exit 1, both done trials skipped; {failure}")
    bob = {**env, "MLFLOW_TRACKING_URI": url, **dict(zip(LOGIN, logins["bob"]))}
    check_fresh_clones(tmp, git_remote, bob)
    check_mlflow(url, tmp, logins["bob"], env)
    return (f"2 trials on 2 Ray nodes ({', '.join(f'{n} on {nodes[n]}' for n in TRIALS)}), sweep {seconds:.0f} s; "
            f"both experiments and outputs back in a fresh clone; 2 MLflow runs with eval.mp4 on PostgreSQL behind "
            f"basic auth, the model evaluated by runs:/ and models:/")


def _interrupt(signum: int, frame: object) -> None:
    raise KeyboardInterrupt


def in_loopback_namespace() -> bool:
    return [name for _, name in socket.if_nameindex()] == ["lo"]  # this namespace's interfaces (not /sys's)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--params", type=Path, help="a params.yaml to use instead of the demo's tiny one")
    parser.add_argument("--keep", action="store_true", help="keep the temporary folder (logs) afterwards")
    args = parser.parse_args()
    if os.geteuid() != 0:
        print("error: the scale demo needs root (a network namespace; PostgreSQL runs as user postgres)",
              file=sys.stderr)
        return 2
    if postgres_bin() is None:
        print("error: PostgreSQL is not installed (apt-get install postgresql)", file=sys.stderr)
        return 2
    signal.signal(signal.SIGTERM, _interrupt)
    if not in_loopback_namespace():  # run again inside a new network namespace holding only lo
        cmd = ["unshare", "--net", "--", "sh", "-c", 'ip link set lo up && exec "$@"', "sh", sys.executable,
               *sys.argv]
        inner = subprocess.Popen(cmd)  # unshare and sh exec: this is the inner demo's own process
        try:
            return inner.wait()
        except KeyboardInterrupt:
            inner.send_signal(signal.SIGTERM)  # it tears down what it started, then exits
            return inner.wait()
    started = time.monotonic()
    tmp = Path(tempfile.mkdtemp(prefix="planet-scale-"))
    tmp.chmod(0o755)  # PostgreSQL's data folder lives inside, owned by postgres
    env = {**os.environ, "RAY_USAGE_STATS_ENABLED": "0", "PYTHONPATH": "",
           "PATH": f"{Path(sys.executable).parent}{os.pathsep}{os.environ['PATH']}"}
    for name in ("MLFLOW_TRACKING_URI", *LOGIN):  # the demo's own server and users, not the caller's
        env.pop(name, None)
    # Ray's token authentication with a token of the demo's own: every Ray process and client it
    # starts carries it, and the cluster refuses any other (independent of ~/.ray/auth_token, which a
    # local `ray.init()` writes and a later `ray start` would otherwise pick up).
    env.update(RAY_AUTH_MODE="token", RAY_AUTH_TOKEN=secrets.token_hex(32))
    os.environ["MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR"] = "false"  # for this process's downloads
    if not run(["git", "config", "user.name"], check=False).stdout.strip():  # a machine with no git identity
        env.update(GIT_AUTHOR_NAME="scale-demo", GIT_AUTHOR_EMAIL="scale-demo@localhost",
                   GIT_COMMITTER_NAME="scale-demo", GIT_COMMITTER_EMAIL="scale-demo@localhost")
    # DVC would send usage reports and look for updates from daemons that detach from the demo's
    # processes (and cannot reach anything in here): a system config for the demo's DVC turns both off.
    (tmp / "dvc-system").mkdir()
    (tmp / "dvc-system/config").write_text("[core]\n    analytics = false\n    check_update = false\n")
    env["DVC_SYSTEM_CONFIG_DIR"] = str(tmp / "dvc-system")
    services = Services(tmp, env)
    summary, error = "", ""
    try:
        summary = demo(tmp, args.params, services, env)
    except (DemoError, subprocess.TimeoutExpired) as err:
        error = str(err)
    except KeyboardInterrupt:
        error = "interrupted"
    finally:
        for signum in (signal.SIGINT, signal.SIGTERM):  # a second Ctrl-C must not cut the teardown short
            signal.signal(signum, signal.SIG_IGN)
        teardown = time.monotonic()
        left = services.stop()
        teardown = time.monotonic() - teardown
        if not args.keep:
            shutil.rmtree(tmp, ignore_errors=True)
    if left:
        error = error or f"{len(left)} processes left running: {left[0]}"
    if error:
        print(f"error: scale-demo: {error}" + (f" (logs kept in {tmp})" if args.keep else ""), file=sys.stderr)
        return 1
    say(f"passed in {time.monotonic() - started:.0f} s: {summary}; nothing left running (teardown {teardown:.0f} s)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
