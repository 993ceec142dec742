import math

import pytest

from planet.config import Config, ConfigError, PlannerConfig, load_config

SECTIONS = {"env": {}, "data": {}, "model": {}, "train": {}, "planner": {}, "evaluate": {}, "dream": {},
            "runtime": {}, "mlflow": {}}


def params(**overrides):
    raw = {k: dict(v) for k, v in SECTIONS.items()}
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        raw[section][key] = value
    return raw


def test_missing_keys_take_the_defaults_which_are_the_learning_config():
    cfg = load_config(params())
    assert cfg == Config()
    t, p = cfg.train, cfg.planner
    assert (t.iterations, t.steps_per_iteration, t.batch_size, t.seq_len, t.lr) == (95, 75, 16, 32, 1e-3)
    assert (t.kl_beta, t.free_nats, t.reward_scale, t.overshoot_beta) == (1.0, 3.0, 10.0, 0.0)
    assert (t.checkpoint_every, t.keep_checkpoints) == (5, 5)
    assert (p.candidates, p.top_k, p.horizon, p.iterations, p.warm_start) == (500, 50, 12, 8, True)
    assert cfg.data.seed_episodes == 5 and cfg.env.id == "Pendulum-v1" and cfg.env.image_size == 64


@pytest.mark.parametrize("overrides, message", [
    ({"train__batch_size": 0}, "train.batch_size: must be a positive integer"),
    ({"train__batch_size": "16"}, "train.batch_size: must be an integer"),
    ({"train__batch_size": True}, "train.batch_size: must be an integer"),
    ({"train__lr": -1e-3}, "train.lr: must be a positive number"),
    ({"train__lr": math.nan}, "train.lr: must be finite"),
    ({"train__lr": math.inf}, "train.lr: must be finite"),
    ({"train__lrr": 1e-3}, "train.lrr: unknown key (did you mean 'train.lr'?)"),
    ({"planner__top_k": 2000}, "planner.top_k: 2000 is more than planner.candidates"),
    ({"env__image_size": 50}, "env.image_size: 50 cannot be taken by the model"),
    ({"runtime__device": "tpu"}, "runtime.device: must be one of auto, cpu, cuda"),
    ({"runtime__compile": "yes"}, "runtime.compile: must be true or false"),
])
def test_bad_values_name_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(params(**overrides))
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_missing_section_and_wrong_shape():
    raw = params()
    del raw["train"]
    with pytest.raises(ConfigError, match="train: missing section"):
        load_config(raw)
    with pytest.raises(ConfigError, match="planner: must be a mapping"):
        load_config({**params(), "planner": [1, 2]})
    with pytest.raises(ConfigError, match=r"trian: unknown key \(did you mean 'train'\?\)"):
        load_config({**params(), "trian": {}})


def test_flat_and_fingerprint():
    cfg = load_config(params(train__lr=3e-4))
    flat = cfg.flat()
    assert flat["train.lr"] == 3e-4 and flat["seed"] == 0 and flat["planner.top_k"] == 50
    assert cfg.fingerprint("train") != Config().fingerprint("train")
    assert cfg.fingerprint("evaluate") == Config().fingerprint("evaluate")


def test_evaluation_planner_takes_evaluate_horizon():
    collect_only = load_config(params(planner__horizon=12, evaluate__horizon=0))
    assert collect_only.evaluation_planner() == collect_only.planner  # 0: plan as far as collection
    cfg = load_config(params(planner__horizon=12, evaluate__horizon=6, planner__candidates=500))
    assert cfg.planner.horizon == 12
    assert cfg.evaluation_planner() == PlannerConfig(**{**cfg.section("planner"), "horizon": 6})
    with pytest.raises(ConfigError, match="evaluate.horizon: must be a non-negative integer"):
        load_config(params(evaluate__horizon=-1))


def test_removed_options_load_at_their_fixed_value_and_are_refused_otherwise():
    """Params and checkpoints from before an option's removal still load, unless they used it."""
    assert load_config(params(planner__sample_states=True, train__overshoot_reward_scale=0)) == Config()
    with pytest.raises(ConfigError, match=r"^planner\.sample_states: this option was removed; only True"):
        load_config(params(planner__sample_states=False))
    with pytest.raises(ConfigError, match=r"^train\.overshoot_reward_scale: this option was removed"):
        load_config(params(train__overshoot_reward_scale=1.0))
