"""Typed, validated configuration: `params.yaml` becomes frozen dataclasses once, at the edge.

Every knob has a one-line docstring. `load_config(raw_dict)` checks types, ranges, unknown keys
(with a did-you-mean hint) and cross-field rules, and raises `ConfigError` with one line that names
the key. Defaults are the committed learning configuration (`params.yaml`, which learns Pendulum-v1 on
a 2-core CPU); where the tutorial notebook's `Config` differs, `planet.notebook` holds its values
and `profiles/notebook.args` sets them all back.
"""
from __future__ import annotations

import dataclasses
import difflib
import hashlib
import json
import math
import typing
from dataclasses import dataclass, field
from typing import Any, Literal


class ConfigError(ValueError):
    """A user mistake in the params: the message is one line that names the key."""


# Each key's role in a run, declared beside its field (dataclass field metadata). Keys with no role
# shape the trained model: a checkpoint resumes only under the same values (`planet.identity`).
SCHEDULE = {"role": "schedule"}
"""How long a run goes, how it is saved, how fast it computes: changing it continues the run."""
AFTER_TRAINING = {"role": "after training"}
"""A section used only after training (evaluation, dreams, tracking): changing it keeps the model."""


@dataclass(frozen=True)
class EnvConfig:
    id: str = "Pendulum-v1"
    """Gymnasium id; needs a continuous (Box) action space and `render_mode="rgb_array"`."""
    image_size: int = 64
    """Observations are image_size x image_size x 3 uint8; a multiple of 16 (four stride-2 convs)."""
    action_repeat: int = 4
    """Each planner action is applied this many times; rewards are summed (paper Sec. 5)."""
    crop: float = 0.55
    """Central fraction of the rendered frame kept before resizing (camera framing); 1 keeps it all
    (the notebook does; Pendulum's rod then covers too few pixels)."""


@dataclass(frozen=True)
class DataConfig:
    seed_episodes: int = 5
    """Random-action episodes collected before planning starts."""


@dataclass(frozen=True)
class ModelConfig:
    network: Literal["notebook", "paper"] = "notebook"
    """Conv stacks and GRU input. `notebook`: the tutorial notebook's (padded convs, a linear layer to
    `embed_size`, [s, a] straight into the GRU; 7,310,436 parameters at its sizes). `paper`: the official code's
    (four unpadded 4x4 stride-2 convs whose 2x2x8d output is the embedding, a decoder from a 1x1 map
    through transposed convs of kernels 5, 5, 6, 6, and a linear + ReLU embedding of [s, a] of width
    `hidden_size` before the GRU); needs `env.image_size: 64` and `embed_size` = 32 * `cnn_depth`."""
    belief_size: int = 200
    """Deterministic GRU state h (paper: 200)."""
    state_size: int = 30
    """Stochastic latent s (paper: 30)."""
    embed_size: int = 1024
    """Encoder output e."""
    hidden_size: int = 256
    """Hidden layer of the prior and posterior MLPs."""
    reward_hidden_size: int = 400
    """Hidden layers of the reward head."""
    cnn_depth: int = 32
    """Channels of the first conv; doubled per layer (32, 64, 128, 256)."""
    min_std: float = 0.1
    """Floor added to softplus(std) of prior and posterior."""
    decoder_output: Literal["sigmoid", "linear"] = "linear"
    """The decoder's last activation. `sigmoid` (the notebook's) can saturate: once the logits of the
    background grow large, no gradient reaches the pixels of small objects. `linear` (the paper's
    official code: the mean of a unit Gaussian) cannot."""


@dataclass(frozen=True)
class TrainConfig:
    iterations: int = field(default=95, metadata=SCHEDULE)
    """Outer loop: train, then collect. 5 seed + 95 collected Pendulum episodes = 20,000 env steps."""
    steps_per_iteration: int = 75
    """Gradient steps per iteration."""
    batch_size: int = 16
    """Sequences per gradient step."""
    seq_len: int = 32
    """Steps per training sequence (never crosses an episode boundary)."""
    lr: float = 1e-3
    """Adam(W) learning rate."""
    adam_eps: float = 1e-4
    """Adam epsilon (the official code's)."""
    weight_decay: float = 0.0
    """AdamW weight decay; 0 gives plain Adam."""
    grad_clip: float = 1000.0
    """Gradient norm clip (the official code's)."""
    collect_episodes: int = 1
    """Planner episodes collected per iteration."""
    exploration_noise: float = 0.3
    """Std of Gaussian noise added to planner actions while collecting."""
    free_nats: float = 3.0
    """KL below this many nats per time step is not penalised (the official code's)."""
    kl_beta: float = 1.0
    """Weight of KL[q || p] (the official code's)."""
    overshoot_beta: float = 0.0
    """Weight of the latent-overshooting KL; 0 turns it off."""
    overshoot_depth: int = 5
    """Overshooting distance D."""
    reward_scale: float = 10.0
    """Weight of the reward MSE (the official code's)."""
    bit_depth: int = 5
    """Observation bit depth; below 8 adds uniform dequantisation noise (the official code's)."""
    checkpoint_every: int = field(default=5, metadata=SCHEDULE)
    """Iterations between checkpoints."""
    keep_checkpoints: int = field(default=5, metadata=SCHEDULE)
    """Newest checkpoints kept on disk."""


@dataclass(frozen=True)
class PlannerConfig:
    candidates: int = 500
    """Action sequences sampled per CEM iteration."""
    top_k: int = 50
    """Elite sequences the Gaussian is refit to."""
    horizon: int = 12
    """Planning horizon in (repeated) actions."""
    iterations: int = 8
    """CEM refinement iterations."""
    warm_start: bool = True
    """Start each plan from the previous step's refit mean shifted by one step (zero appended)
    instead of from zero; the std still starts at 1. Off in the paper."""


@dataclass(frozen=True)
class EvaluateConfig:
    episodes: int = 10
    """Evaluation episodes, run side by side, each with its own fixed env seed."""
    horizon: int = 6
    """Planning horizon when evaluating; 0 plans as far ahead as collection does (`planner.horizon`).
    On Pendulum the learned model's long-range predictions mislead the search."""


@dataclass(frozen=True)
class DreamConfig:
    episodes: int = 3
    """Replay episodes to dream from."""
    context_frames: int = 5
    """Real frames filtered through the posterior before dreaming."""
    dream_steps: int = 50
    """Open-loop prior steps with the recorded actions."""
    fps: int = 15
    """Frame rate of the dream videos."""


@dataclass(frozen=True)
class RuntimeConfig:
    device: Literal["auto", "cpu", "cuda"] = "auto"
    """auto picks CUDA when present."""
    precision: Literal["auto", "fp32", "bf16"] = "auto"
    """bf16 runs matmuls and convs under autocast; distributions and losses stay fp32. auto: bf16 on a
    CUDA device that supports it; on a CPU, bf16 only where a short matmul probe finds it at least 10%
    faster than fp32 (CPUs differ: docs/performance.md). A run keeps the choice it started with."""
    threads: int = field(default=0, metadata=SCHEDULE)
    """torch CPU threads; 0 keeps torch's default (one per core). A run continues under another count,
    but sums split over other threads round differently: from there it is not bit for bit the same."""
    compile: bool = True
    """torch.compile the planner's rollout step: seconds to compile on the first plan, then faster plans
    (docs/performance.md). false for debugging, or where torch.compile has no
    C++ compiler to call. On a CPU in bf16 the rollout runs on weights packed for oneDNN instead
    (`planet.packed`, faster still, nothing to compile), so there this only matters for fp32."""


@dataclass(frozen=True)
class MlflowConfig:
    experiment: str = "planet"
    """MLflow experiment name."""


@dataclass(frozen=True)
class Config:
    seed: int = 0
    """Seeds every generator: torch, numpy, env resets."""
    env: EnvConfig = field(default_factory=EnvConfig)
    data: DataConfig = field(default_factory=DataConfig)
    model: ModelConfig = field(default_factory=ModelConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    planner: PlannerConfig = field(default_factory=PlannerConfig)
    evaluate: EvaluateConfig = field(default_factory=EvaluateConfig, metadata=AFTER_TRAINING)
    dream: DreamConfig = field(default_factory=DreamConfig, metadata=AFTER_TRAINING)
    runtime: RuntimeConfig = field(default_factory=RuntimeConfig)
    mlflow: MlflowConfig = field(default_factory=MlflowConfig, metadata=AFTER_TRAINING)

    def __post_init__(self) -> None:
        if self.planner.top_k > self.planner.candidates:
            raise ConfigError(f"planner.top_k: {self.planner.top_k} is more than planner.candidates "
                              f"({self.planner.candidates})")
        if self.planner.top_k < 2:
            raise ConfigError("planner.top_k: must be at least 2 to refit a standard deviation")
        if self.env.image_size % 16 or self.env.image_size < 16:
            raise ConfigError(f"env.image_size: {self.env.image_size} cannot be taken by the model "
                              "(four stride-2 convs need a multiple of 16, at least 16)")
        if self.model.network == "paper":
            if self.env.image_size != 64:
                raise ConfigError(f"env.image_size: the paper network takes 64x64 frames, got {self.env.image_size}")
            if self.model.embed_size != 32 * self.model.cnn_depth:
                depth = self.model.cnn_depth
                raise ConfigError(f"model.embed_size: the paper network's embedding is its 2x2x{8 * depth} "
                                  f"conv output, {32 * depth}; got {self.model.embed_size}")
        if self.env.crop > 1:
            raise ConfigError(f"env.crop: must be within (0, 1], got {self.env.crop}")
        if not 1 <= self.train.bit_depth <= 8:
            raise ConfigError(f"train.bit_depth: must be within 1..8, got {self.train.bit_depth}")
        if self.train.seq_len < 2:
            raise ConfigError("train.seq_len: must be at least 2")

    def evaluation_planner(self) -> PlannerConfig:
        """The planner the evaluate stage uses: `planner`, with `evaluate.horizon` when that is set."""
        if not self.evaluate.horizon:
            return self.planner
        return dataclasses.replace(self.planner, horizon=self.evaluate.horizon)

    def section(self, name: str) -> dict[str, Any]:
        """One section (`train`, `planner`, ...) as a plain mapping."""
        return dataclasses.asdict(getattr(self, name))

    def flat(self) -> dict[str, Any]:
        """Every param as `section.key -> value` (what MLflow logs)."""
        out: dict[str, Any] = {}
        for key, value in dataclasses.asdict(self).items():
            if isinstance(value, dict):
                out.update({f"{key}.{k}": v for k, v in value.items()})
            else:
                out[key] = value
        return out

    def training_params(self) -> dict[str, Any]:
        """The params that shape a trained model, as `section.key -> value`: every key of the sections
        training uses, less the schedule keys."""
        flat = self.flat()
        return {k: flat[k] for k in flat if _role(k) is None}

    def fingerprint(self, *sections: str) -> str:
        """Short hash of the named sections (all when none): what shaped a checkpoint or a run."""
        flat = self.flat()
        keys = [k for k in flat if not sections or k.split(".")[0] in sections]
        payload = json.dumps({k: flat[k] for k in sorted(keys)})  # sorted: the same params, the same hash
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def _role(key: str) -> str | None:
    """The role of a `section.key` (or top-level key) declared in its field's metadata."""
    cls: type = Config
    for name in key.split("."):
        found = next(f for f in dataclasses.fields(cls) if f.name == name)
        if "role" in found.metadata:
            return found.metadata["role"]
        cls = typing.get_type_hints(cls)[name]  # the annotations are strings here
    return None


def schedule_keys() -> list[str]:
    """Every `section.key` whose role is the schedule."""
    return [k for k in Config().flat() if _role(k) == SCHEDULE["role"]]


# Checks on single fields that the type alone does not say.
_NON_NEGATIVE = {"train.free_nats", "train.overshoot_beta", "train.weight_decay", "train.exploration_noise",
                 "train.kl_beta", "runtime.threads", "seed", "train.overshoot_depth", "evaluate.horizon"}

# Keys that older params and checkpoints carry for options since removed (docs/record/experiments.md says
# what they showed): accepted at the value the code now always uses, refused otherwise.
RETIRED_KEYS = {"train.overshoot_reward_scale": 0.0, "planner.sample_states": True}
# Values that older params and checkpoints carry under an earlier name: read as today's.
RENAMED_VALUES = {"model.network": {"seed": "notebook"}}


def _check_value(key: str, hint: Any, value: Any) -> Any:
    origin = typing.get_origin(hint)
    if origin is Literal:
        choices = typing.get_args(hint)
        if value not in choices:
            raise ConfigError(f"{key}: must be one of {', '.join(map(str, choices))}, got {value!r}")
        return value
    if hint is bool:
        if not isinstance(value, bool):
            raise ConfigError(f"{key}: must be true or false, got {value!r}")
        return value
    if hint is int:
        if isinstance(value, bool) or not isinstance(value, int):
            raise ConfigError(f"{key}: must be an integer, got {value!r}")
        if value < 0 or (value == 0 and key not in _NON_NEGATIVE):
            kind = "non-negative" if key in _NON_NEGATIVE else "positive"
            raise ConfigError(f"{key}: must be a {kind} integer, got {value}")
        return value
    if hint is float:
        if isinstance(value, bool) or not isinstance(value, (int, float)):
            raise ConfigError(f"{key}: must be a number, got {value!r}")
        if not math.isfinite(value):
            raise ConfigError(f"{key}: must be finite, got {value}")
        if value < 0 or (value == 0 and key not in _NON_NEGATIVE):
            kind = "non-negative" if key in _NON_NEGATIVE else "positive"
            raise ConfigError(f"{key}: must be a {kind} number, got {value}")
        return float(value)
    if hint is str:
        if not isinstance(value, str) or not value:
            raise ConfigError(f"{key}: must be a non-empty string, got {value!r}")
        return value
    raise TypeError(f"unsupported field type {hint} for {key}")  # a bug here, not a user error


def _build(cls: type, raw: Any, prefix: str) -> Any:
    where = prefix[:-1] or "params"  # "train." -> "train"
    if not isinstance(raw, dict):
        raise ConfigError(f"{where}: must be a mapping of keys to values, got {raw!r}")
    hints = typing.get_type_hints(cls)
    names = [f.name for f in dataclasses.fields(cls)]
    for key in raw:
        retired = f"{prefix}{key}"
        if retired in RETIRED_KEYS:
            if raw[key] != RETIRED_KEYS[retired]:
                raise ConfigError(f"{retired}: this option was removed; only {RETIRED_KEYS[retired]!r}, "
                                  f"what the code now always does, is accepted, got {raw[key]!r}")
            continue
        if key not in names:
            close = difflib.get_close_matches(str(key), names)
            hint = f" (did you mean '{prefix}{close[0]}'?)" if close else ""
            raise ConfigError(f"{prefix}{key}: unknown key{hint}")
    kwargs = {}
    for name in names:
        hint = hints[name]
        if name not in raw:
            if dataclasses.is_dataclass(hint):
                raise ConfigError(f"{prefix}{name}: missing section")
            continue  # a missing key takes its default
        if dataclasses.is_dataclass(hint):
            kwargs[name] = _build(hint, raw[name], f"{prefix}{name}.")
        else:
            value = raw[name]
            if isinstance(value, str):
                value = RENAMED_VALUES.get(f"{prefix}{name}", {}).get(value, value)
            kwargs[name] = _check_value(f"{prefix}{name}", hint, value)
    return cls(**kwargs)


def load_config(raw: Any) -> Config:
    """Build and validate a `Config` from the parsed `params.yaml` mapping."""
    if raw is None:
        raw = {}
    return _build(Config, raw, "")
