"""The MLflow helpers that need no store."""
from __future__ import annotations

from types import SimpleNamespace

from experiments.tracking import RUN_LIST_METRICS, run_list_columns


def training_run(**params: str) -> SimpleNamespace:
    return SimpleNamespace(data=SimpleNamespace(params={"env.id": "Pendulum-v1", "seed": "0", **params}))


def test_the_run_list_shows_env_seed_and_each_param_that_differs():
    runs = [training_run(**{"train.lr": "0.001", "model.cnn_depth": "32"}),
            training_run(**{"train.lr": "0.0005", "model.cnn_depth": "32", "planner.horizon": "12"})]
    assert run_list_columns(runs) == ["params.`env.id`", "params.`seed`", "params.`planner.horizon`",
                                      "params.`train.lr`", *(f"metrics.`{k}`" for k in RUN_LIST_METRICS)]


def test_the_run_list_caps_its_param_columns():
    runs = [training_run(**{f"p{i}": "a" for i in range(20)}), training_run(**{f"p{i}": "b" for i in range(20)})]
    params = [c for c in run_list_columns(runs, max_params=5) if c.startswith("params.")]
    assert params == ["params.`env.id`", "params.`seed`", "params.`p0`", "params.`p1`", "params.`p10`"]
