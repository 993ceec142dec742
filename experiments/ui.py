"""`make ui`: the MLflow UI over this project's store, on 127.0.0.1, announced with the address of
the training runs of the experiment in params.yaml, shown with the params that differ between them
and their returns as columns (a shared view the UI restores from the address)."""
from __future__ import annotations

import os
import shutil
import sys

from experiments import tracking
from stages.common import entry_point, load_params

PORT = os.environ.get("MLFLOW_UI_PORT", "5000")


@entry_point
def main() -> None:
    cfg = load_params()
    client, experiment_id = tracking.connect(cfg)
    view = tracking.share_run_list_view(client, experiment_id)
    # `workflowType`: the UI's model-training menus, not its GenAI ones, which a fresh browser defaults to.
    address = (f"http://127.0.0.1:{PORT}/#/experiments/{experiment_id}/runs"
               f"?viewStateShareKey={view}&workflowType=machine_learning")
    print(f"MLflow UI: open {address}\n"
          f"  the training runs of experiment '{cfg.mlflow.experiment}' with the params that differ between them and "
          f"their returns; tick two and press Compare", flush=True)
    mlflow = shutil.which("mlflow") or os.path.join(os.path.dirname(sys.executable), "mlflow")
    # One worker and no job runner: a UI for one person, light on a 2-core machine beside a training run.
    os.environ.setdefault("MLFLOW_SERVER_ENABLE_JOB_EXECUTION", "false")
    os.execv(mlflow, [mlflow, "ui", "--backend-store-uri", tracking.tracking_uri(), "--host", "127.0.0.1",
                      "--port", PORT, "--workers", "1"])


if __name__ == "__main__":
    main()
