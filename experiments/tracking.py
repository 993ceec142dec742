"""MLflow tracking through `MlflowClient` (no fluent global state).

Store: `MLFLOW_TRACKING_URI` if set, else MLflow 3's default, a SQLite file `mlflow.db` at the
project root with artifacts in `mlartifacts/` beside it. Under `dvc exp run --temp/--queue` the
stage runs in a copy of the repo inside `<root>/.dvc/tmp/exps/`, so the root is resolved back to
the real project, and every experiment logs into the same store. A team's MLflow server
(`MLFLOW_TRACKING_URI=http://host:port`, docs/team.md) that cannot be reached, or that refuses the
login in `MLFLOW_TRACKING_USERNAME` / `MLFLOW_TRACKING_PASSWORD`, fails in one line at once.
"""
from __future__ import annotations

import datetime as dt
import json
import os
import socket
import subprocess
import urllib.parse
import warnings
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from planet.config import Config, load_config, schedule_keys

# The UI opens an experiment of this kind on its runs table, not on the GenAI (traces) view.
EXPERIMENT_KIND, MODEL_TRAINING = "mlflow.experimentKind", "custom_model_development"
# The UI restores a run-list view saved under this experiment tag prefix when its address carries
# `?viewStateShareKey=<key>` (what its own Share button does).
SHARED_VIEW_PREFIX, RUN_LIST_VIEW = "mlflow.sharedViewState.", "planet-runs"
RUN_LIST_METRICS = ("eval/return_mean", "eval/return_std", "collect_return", "env_steps", "wall_time_s")
ALWAYS_SHOWN_PARAMS = ("env.id", "seed")


class TrackingError(RuntimeError):
    """The tracking store cannot be used: one line for the user, no traceback."""


def project_root(cwd: Path | None = None) -> Path:
    cwd = (cwd or Path.cwd()).resolve()
    parts = cwd.parts
    for i in range(len(parts) - 2):
        if parts[i : i + 3] == (".dvc", "tmp", "exps"):
            return Path(*parts[:i])
    return cwd


def tracking_uri() -> str:
    return os.environ.get("MLFLOW_TRACKING_URI") or f"sqlite:///{project_root() / 'mlflow.db'}"


def connect(cfg: Config):
    """-> (client, experiment_id); any failure to reach or write the store is one clear error."""
    import logging

    from mlflow.exceptions import MlflowException
    from mlflow.tracking import MlflowClient

    for name in ("alembic", "mlflow"):  # schema-migration chatter when a new store is created
        logging.getLogger(name).setLevel(logging.WARNING)

    uri = tracking_uri()
    if urllib.parse.urlparse(uri).scheme in ("http", "https"):  # now, not after MLflow's minutes of retries
        problem = server_problem(uri)
        if problem:
            raise TrackingError(problem)
    try:
        client = MlflowClient(tracking_uri=uri)
        experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
        if experiment is None:
            location = None
            if uri.startswith("sqlite:///"):  # artifacts beside the database, wherever it is run from
                location = (Path(uri.removeprefix("sqlite:///")).resolve().parent / "mlartifacts").as_uri()
            try:
                return client, client.create_experiment(cfg.mlflow.experiment, artifact_location=location,
                                                        tags={EXPERIMENT_KIND: MODEL_TRAINING})
            except MlflowException:  # runs starting together on a shared server: another one made it first
                experiment = client.get_experiment_by_name(cfg.mlflow.experiment)
                if experiment is None:
                    raise
        if experiment.tags.get(EXPERIMENT_KIND) != MODEL_TRAINING:
            client.set_experiment_tag(experiment.experiment_id, EXPERIMENT_KIND, MODEL_TRAINING)
        return client, experiment.experiment_id
    except Exception as err:  # MLflow raises many types for an unreachable or read-only store
        first = str(err).strip().splitlines()[0][:200] if str(err).strip() else type(err).__name__
        raise TrackingError(f"MLflow tracking store {uri} cannot be used: {first}") from None


LOGIN = ("MLFLOW_TRACKING_USERNAME", "MLFLOW_TRACKING_PASSWORD")  # MLflow's own: a basic-auth server's login


def server_problem(uri: str) -> str | None:
    """Why the http(s) tracking server `uri` cannot be used with this environment's login (`LOGIN`),
    in one line; None when it answers and lets that login read its experiments."""
    from mlflow.utils.credentials import get_default_host_creds
    from mlflow.utils.rest_utils import http_request

    server = urllib.parse.urlparse(uri)
    try:
        socket.create_connection((server.hostname, server.port or (443 if server.scheme == "https" else 80)),
                                 timeout=10).close()
    except OSError as err:
        return f"MLflow tracking server {uri} is unreachable: {err.strerror or err}"
    user, password = (os.environ.get(name) for name in LOGIN)
    if user and not password:
        return f"MLFLOW_TRACKING_USERNAME is set ({user!r}) but MLFLOW_TRACKING_PASSWORD is not"
    try:
        answer = http_request(get_default_host_creds(uri), "/api/2.0/mlflow/experiments/search", "GET",
                              max_retries=0, timeout=30, params={"max_results": 1})
    except Exception as err:  # requests' and urllib3's many kinds of a broken connection
        return f"MLflow tracking server {uri} did not answer: {str(err).splitlines()[0][:200]}"
    if answer.status_code == 401 and not user:
        return f"MLflow tracking server {uri} asks for a login: set {' and '.join(LOGIN)}"
    if answer.status_code == 401:
        return f"MLflow tracking server {uri} refused user {user!r}: wrong user name or password"
    if answer.status_code == 403:
        return f"MLflow tracking server {uri} does not let user {user!r} read experiments"
    if answer.status_code != 200:
        return f"MLflow tracking server {uri} answered {answer.status_code}: {answer.text.strip()[:200]}"
    return None


def run_list_columns(runs: list[Any], max_params: int = 10) -> list[str]:
    """The run list's columns: the env, the seed and every other param whose value differs between
    the training runs (up to `max_params` in all), then the returns and progress metrics."""
    values: dict[str, set[str]] = {}
    for run in runs:
        for key, value in run.data.params.items():
            values.setdefault(key, set()).add(value)
    differing = sorted(k for k, v in values.items()
                       if k not in ALWAYS_SHOWN_PARAMS and (len(v) > 1 or any(k not in r.data.params for r in runs)))
    params = [*ALWAYS_SHOWN_PARAMS, *differing][:max_params]
    return [*(f"params.`{k}`" for k in params), *(f"metrics.`{k}`" for k in RUN_LIST_METRICS)]


def share_run_list_view(client, experiment_id: str) -> str:
    """Save the run list's view (training runs only, `run_list_columns`) as a shared view of the
    experiment; returns the key that opens it (`?viewStateShareKey=<key>`)."""
    runs = [r for r in client.search_runs([experiment_id], max_results=1000)
            if "mlflow.parentRunId" not in r.data.tags]
    view = {"selectedColumns": run_list_columns(runs), "orderByKey": "attributes.start_time", "orderByAsc": False}
    client.set_experiment_tag(experiment_id, SHARED_VIEW_PREFIX + RUN_LIST_VIEW, json.dumps(view))
    return RUN_LIST_VIEW


def _git(*args: str) -> str:
    try:
        return subprocess.run(["git", *args], capture_output=True, text=True, check=True).stdout.strip()
    except (OSError, subprocess.CalledProcessError):
        return ""


def run_tags(cfg: Config, device: torch.device, input_digest: str) -> dict[str, str]:
    tags = {
        "git.commit": _git("rev-parse", "HEAD") or "unknown",
        "git.dirty": str(bool(_git("status", "--porcelain", "--untracked-files=no"))).lower(),
        "planet.input_digest": input_digest,
        "planet.device": str(device),
        "planet.precision": cfg.runtime.precision,
        "torch.version": torch.__version__,
    }
    if os.environ.get("DVC_EXP_NAME"):
        tags["dvc.exp_name"] = os.environ["DVC_EXP_NAME"]
    return tags


def _log_params(client, run_id: str, params: dict[str, Any]) -> None:
    from mlflow.entities import Param

    items = [Param(k, str(v)) for k, v in sorted(params.items())]
    for i in range(0, len(items), 100):
        client.log_batch(run_id, params=items[i : i + 100])


def start_train_run(client, experiment_id: str, cfg: Config, tags: dict[str, str], resume_id: str | None) -> str:
    """Continue `resume_id` when it still exists (a resumed train), else open a new named run."""
    if resume_id:
        try:
            client.get_run(resume_id)
            client.update_run(resume_id, status="RUNNING")
            return resume_id
        except Exception:
            pass  # the run was deleted from the store: start a fresh one
    # The DVC experiment's name says what the run is; without one, the env, the params' hash and the time.
    experiment = os.environ.get("DVC_EXP_NAME")
    name = (f"{experiment} ({cfg.env.id})" if experiment
            else f"{cfg.env.id}-{cfg.fingerprint()[:6]}-{dt.datetime.now().strftime('%Y%m%d-%H%M%S')}")
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    _log_params(client, run.info.run_id, cfg.flat())
    return run.info.run_id


def run_for_stage(client, experiment_id: str, cfg: Config, stage: str, train_run_id: str) -> str:
    """The training run `train_run_id` if its params equal these; else a new child run that
    carries the full params (`mlflow.parentRunId`), so changed evaluate/dream/planner settings compare too.
    Schedule keys do not count: a run continued to more iterations is still the same run (its params
    keep the values it started with, as MLflow params cannot change)."""
    train_run = client.get_run(train_run_id)
    flat = {k: str(v) for k, v in cfg.flat().items()}
    schedule = schedule_keys()
    changed = sorted(k for k in flat if k not in schedule and train_run.data.params.get(k) != flat[k])
    if not changed and set(train_run.data.params) == set(flat):
        return train_run_id
    name = f"{train_run.info.run_name}/{stage}-{cfg.fingerprint()[:6]}"
    tags = {**train_run.data.tags, "mlflow.parentRunId": train_run_id, "planet.changed_params": ",".join(changed)}
    tags = {k: v for k, v in tags.items() if k not in ("mlflow.runName",)}
    run = client.create_run(experiment_id, run_name=name, tags=tags)
    _log_params(client, run.info.run_id, cfg.flat())
    return run.info.run_id


def log_metrics(client, run_id: str, metrics: dict[str, float], step: int) -> None:
    from mlflow.entities import Metric

    now = int(dt.datetime.now().timestamp() * 1000)
    client.log_batch(run_id, metrics=[Metric(k, float(v), now, step) for k, v in metrics.items()])


@contextmanager
def closing_run(client, run_id: str) -> Iterator[str]:
    """Ends `run_id` when the block does: FINISHED, or FAILED (with its end time) when it raises or
    is interrupted, so no run the pipeline opened stays RUNNING."""
    try:
        yield run_id
    except BaseException:
        client.set_terminated(run_id, status="FAILED")
        raise
    client.set_terminated(run_id)


MODEL_ARTIFACT = "model"  # runs:/<run_id>/model


def log_model(run_id: str, model_path: Path, config: dict[str, Any]) -> str:
    """The trained model as the run's MLflow model (`experiments/mlflow_model.py`): the model file, the
    `planet` package that loads it, the env id and the resolved config beside it -> its model id."""
    import logging

    import mlflow

    logging.getLogger("mlflow").setLevel(logging.ERROR)  # no notes on inferred signatures or environments
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    mlflow.set_tracking_uri(tracking_uri())
    root = Path(__file__).resolve().parent.parent
    with mlflow.start_run(run_id=run_id), warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)  # frames in, actions out: no signature to infer
        info = mlflow.pyfunc.log_model(
            name=MODEL_ARTIFACT, python_model=str(root / "experiments/mlflow_model.py"),
            artifacts={"model": str(model_path)}, code_paths=[str(root / "planet")],
            pip_requirements=[f"torch=={torch.__version__}", f"mlflow=={mlflow.__version__}", "gymnasium", "numpy"],
            metadata={"env_id": config["env"]["id"], "config": config}, tags={"env.id": config["env"]["id"]},
            params={k: str(v) for k, v in load_config(config).flat().items()})  # shown in the UI's Models
    return info.model_id
