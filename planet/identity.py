"""A training run's identity: the fingerprint of everything that shapes its weights.

A checkpoint is resumed only under the same fingerprint: the training params (`Config.training_params`:
schedule keys such as `train.iterations` do not count), the engine code a run executes (every module
`planet/run.py` imports, directly or through others, the loop itself included) and the seed episodes.
"""
from __future__ import annotations

import ast
import hashlib
import json
from pathlib import Path
from typing import Any

from planet.config import Config, load_config

ENGINE_DIR = Path(__file__).resolve().parent
ENTRY = "run"  # planet/run.py: Alg. 1's loop, and through its imports every line that trains


def file_digest(paths: list[Path]) -> str:
    digest = hashlib.sha256()
    for path in sorted(paths):
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(path.read_bytes()).digest())
    return digest.hexdigest()[:12]


def _without_docstrings(tree: ast.AST) -> ast.AST:
    for node in ast.walk(tree):
        body = getattr(node, "body", None)
        if (isinstance(body, list) and body and isinstance(body[0], ast.Expr)
                and isinstance(body[0].value, ast.Constant) and isinstance(body[0].value.value, str)):
            node.body = body[1:] or [ast.Pass()]
    return tree


def engine_modules(entry: str = ENTRY, folder: Path = ENGINE_DIR) -> list[Path]:
    """`planet/<entry>.py` and every engine module it imports, directly or through others."""
    seen: set[str] = set()
    todo = [entry]
    while todo:
        name = todo.pop()
        if name in seen:
            continue
        seen.add(name)
        for node in ast.walk(ast.parse((folder / f"{name}.py").read_text())):
            modules = ([node.module] if isinstance(node, ast.ImportFrom) and node.module
                       else [alias.name for alias in node.names] if isinstance(node, ast.Import) else [])
            todo += [m.split(".")[1] for m in modules if m.startswith("planet.")]
    return sorted(folder / f"{name}.py" for name in seen)


def code_digest(folder: Path = ENGINE_DIR, entry: str = ENTRY) -> str:
    """Hash of the engine code a training run executes: a checkpoint from other code is never resumed.
    Only the modules training imports count (the benchmark or the video writer do not), each by its
    syntax tree without docstrings, so edits to comments, docstrings or layout keep a run."""
    digest = hashlib.sha256()
    for path in engine_modules(entry, folder):
        tree = _without_docstrings(ast.parse(path.read_text(), filename=str(path)))
        digest.update(path.name.encode())
        digest.update(hashlib.sha256(ast.dump(tree).encode()).digest())
    return digest.hexdigest()[:12]


def training_fingerprint(cfg: Config, seed_paths: list[Path], folder: Path = ENGINE_DIR) -> str:
    """What a checkpoint's weights depend on: the training params as written (`auto` included), the
    engine code and the seed episodes."""
    parts = [json.dumps(cfg.training_params(), sort_keys=True), code_digest(folder), file_digest(seed_paths)]
    return hashlib.sha256("|".join(parts).encode()).hexdigest()[:16]


def changed_keys(before: dict[str, Any], cfg: Config) -> list[str]:
    """The training params that differ between a checkpoint's recorded config and `cfg`; a recorded
    precision that `auto` chose does not count as a change while `cfg` still says `auto`."""
    try:
        then = load_config(before).flat()
    except Exception:  # a config this code no longer reads
        return ["(unreadable config)"]
    now = cfg.training_params()
    if cfg.runtime.precision == "auto":
        now.pop("runtime.precision")
    return [k for k in now if then.get(k) != now[k]]
