import dataclasses
import math

import pytest

from planet.config import Config, ConfigError, PlannerConfig, load_config, schedule_keys

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
    ({"train__batch_size": 0}, "train.batch_size: must be a positive integer, got 0"),
    ({"train__batch_size": -1}, "train.batch_size: must be a positive integer, got -1"),
    ({"train__batch_size": "16"}, "train.batch_size: must be an integer, got '16'"),
    ({"train__batch_size": True}, "train.batch_size: must be an integer, got True"),
    ({"train__lr": -1e-3}, "train.lr: must be a positive number, got -0.001"),
    ({"train__lr": 0.0}, "train.lr: must be a positive number, got 0.0"),
    ({"train__lr": "x"}, "train.lr: must be a number, got 'x'"),
    ({"train__lr": True}, "train.lr: must be a number, got True"),
    ({"train__lr": math.nan}, "train.lr: must be finite, got nan"),
    ({"train__lr": math.inf}, "train.lr: must be finite, got inf"),
    ({"train__free_nats": -1.0}, "train.free_nats: must be a non-negative number, got -1.0"),
    ({"train__overshoot_depth": -1}, "train.overshoot_depth: must be a non-negative integer, got -1"),
    ({"train__lrr": 1e-3}, "train.lrr: unknown key (did you mean 'train.lr'?)"),
    ({"train__zzz": 1}, "train.zzz: unknown key"),
    ({"env__id": ""}, "env.id: must be a non-empty string, got ''"),
    ({"env__id": 3}, "env.id: must be a non-empty string, got 3"),
    ({"planner__top_k": 501}, "planner.top_k: 501 is more than planner.candidates (500)"),
    ({"planner__top_k": 1}, "planner.top_k: must be at least 2 to refit a standard deviation"),
    ({"env__image_size": 8},
     "env.image_size: 8 cannot be taken by the model (four stride-2 convs need a multiple of 16, at least 16)"),
    ({"env__image_size": 40},
     "env.image_size: 40 cannot be taken by the model (four stride-2 convs need a multiple of 16, at least 16)"),
    ({"model__network": "paper", "env__image_size": 32},
     "env.image_size: the paper network takes 64x64 frames, got 32"),
    ({"model__network": "paper", "model__embed_size": 1000},
     "model.embed_size: the paper network's embedding is its 2x2x256 conv output, 1024; got 1000"),
    ({"env__crop": 1.01}, "env.crop: must be within (0, 1], got 1.01"),
    ({"train__bit_depth": 9}, "train.bit_depth: must be within 1..8, got 9"),
    ({"train__seq_len": 1}, "train.seq_len: must be at least 2"),
    ({"runtime__device": "tpu"}, "runtime.device: must be one of auto, cpu, cuda, got 'tpu'"),
    ({"runtime__compile": "yes"}, "runtime.compile: must be true or false, got 'yes'"),
])
def test_bad_values_are_refused_in_one_line_that_names_the_key(overrides, message):
    with pytest.raises(ConfigError) as err:
        load_config(params(**overrides))
    assert str(err.value) == message


@pytest.mark.parametrize("overrides", [
    {"planner__top_k": 500}, {"planner__top_k": 2, "planner__candidates": 2}, {"env__image_size": 16},
    {"env__image_size": 48}, {"model__network": "paper"}, {"env__crop": 1.0}, {"train__bit_depth": 1},
    {"train__bit_depth": 8}, {"train__seq_len": 2}, {"train__free_nats": 0.0}, {"train__overshoot_depth": 0},
    {"model__network": "paper", "model__cnn_depth": 8, "model__embed_size": 256},
])
def test_values_at_the_edge_of_each_rule_are_accepted(overrides):
    cfg = load_config(params(**overrides))
    for dotted, value in overrides.items():
        section, key = dotted.split("__")
        assert getattr(getattr(cfg, section), key) == value


def test_numbers_become_floats_and_an_empty_file_names_the_first_missing_section():
    lr = load_config(params(train__lr=1)).train.lr
    assert lr == 1.0 and isinstance(lr, float)
    with pytest.raises(ConfigError, match=r"^env: missing section$"):
        load_config(None)


def test_missing_section_and_wrong_shape():
    raw = params()
    del raw["train"]
    with pytest.raises(ConfigError, match=r"^train: missing section$"):
        load_config(raw)
    with pytest.raises(ConfigError, match=r"^planner: must be a mapping of keys to values, got \[1, 2\]$"):
        load_config({**params(), "planner": [1, 2]})
    with pytest.raises(ConfigError, match=r"^params: must be a mapping of keys to values, got 'x'$"):
        load_config("x")
    with pytest.raises(ConfigError, match=r"^trian: unknown key \(did you mean 'train'\?\)$"):
        load_config({**params(), "trian": {}})


def test_flat_and_fingerprint():
    cfg = load_config(params(train__lr=3e-4))
    flat = cfg.flat()
    assert flat["train.lr"] == 3e-4 and flat["seed"] == 0 and flat["planner.top_k"] == 50
    assert cfg.fingerprint("train") != Config().fingerprint("train")
    assert cfg.fingerprint("evaluate") == Config().fingerprint("evaluate")
    assert cfg.fingerprint() not in (Config().fingerprint(), cfg.fingerprint("evaluate"))
    assert len(cfg.fingerprint()) == 12 and cfg.fingerprint() == load_config(params(train__lr=3e-4)).fingerprint()


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
    with pytest.raises(ConfigError, match=r"^planner\.sample_states: this option was removed; only True, what "
                                          r"the code now always does, is accepted, got False$"):
        load_config(params(planner__sample_states=False))
    with pytest.raises(ConfigError, match=r"^train\.overshoot_reward_scale: this option was removed; only 0\.0"):
        load_config(params(train__overshoot_reward_scale=1.0))


def test_a_removed_option_does_not_stop_the_check_of_the_keys_after_it():
    with pytest.raises(ConfigError, match=r"^planner\.zzz: unknown key$"):
        load_config(params(planner__sample_states=True, planner__zzz=1))


def test_a_field_type_the_checker_does_not_know_is_a_bug_not_a_user_error():
    from planet.config import _check_value

    with pytest.raises(TypeError, match=r"^unsupported field type <class 'list'> for train\.x$"):
        _check_value("train.x", list, [])


@pytest.mark.parametrize("key", ["train.iterations", "train.checkpoint_every", "train.keep_checkpoints",
                                 "runtime.threads"])
def test_schedule_keys_are_declared_beside_their_fields(key):
    assert key in schedule_keys()
    section, name = key.split(".")
    default = getattr(Config(), section)
    bumped = dataclasses.replace(default, **{name: getattr(default, name) + 1})
    other = dataclasses.replace(Config(), **{section: bumped})
    assert other.training_params() == Config().training_params()


def test_every_other_training_key_shapes_the_run():
    params = Config().training_params()
    assert {"seed", "env.id", "train.lr", "planner.horizon", "runtime.precision", "model.network"} <= set(params)
    assert not {k for k in params if k.split(".")[0] in ("evaluate", "dream", "mlflow")}
