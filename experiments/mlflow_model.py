"""The trained model as an MLflow model (pyfunc flavour, "models from code"): what `train` logs as
the run's `model`, so it shows under the experiment's Models, can be registered from the UI, and
loads with `mlflow.pyfunc.load_model("runs:/<run_id>/model")` wherever MLflow, torch and gymnasium
are installed (the `planet` package travels inside it).

    predict(frames) -> actions: frames (T, H, W, 3) uint8 of one episode, as the env renders them;
    the agent observes them in order and returns the action it plans after each, (T, A), in env units.
The model file itself is the artifact `model.pt` (`planet evaluate runs:/<run_id>/model` uses it).
"""
from __future__ import annotations

import mlflow
import numpy as np


class PlanetModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context) -> None:
        from planet import load_agent

        self.agent = load_agent(context.artifacts["model"])

    def predict(self, context, model_input: np.ndarray, params=None) -> np.ndarray:
        self.agent.reset()
        return np.stack([self.agent.act(np.asarray(frame, np.uint8)) for frame in np.asarray(model_input)])


mlflow.models.set_model(PlanetModel())
