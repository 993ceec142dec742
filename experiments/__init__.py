"""Around the pipeline: MLflow tracking (`tracking`, the runs' MLflow model `mlflow_model`), the UI
(`ui`), kept runs (`runs`), sweeps on Ray (`sweep`) and the paper's table (`benchmark`).

The DVC stages (`stages/`) call `tracking`; the rest are commands: `python -m experiments.<name>`.
"""
