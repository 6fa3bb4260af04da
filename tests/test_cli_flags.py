"""One flag, one meaning: the shared flags of scripts/*.py parse alike, old spellings included."""

from __future__ import annotations

import importlib

import pytest

from ltc_rl.cli import parse_env_kwargs, parse_seeds
from ltc_rl.errors import ConfigError


def _parser(name: str):
    return importlib.import_module(f"ltc_rl.cli.{name}").parse_args


# flag -> (the scripts that take it, the arguments, the attribute and value every one of them must give)
SHARED = {
    "--total-timesteps": (("train", "sweep", "pomdp_study"), ["--total-timesteps", "512"], "total_timesteps", 512),
    "--timesteps": (("train", "sweep", "pomdp_study"), ["--timesteps", "512"], "total_timesteps", 512),
    "--obs-noise": (("train", "sweep"), ["--obs-noise", "0.2"], "obs_noise", 0.2),
    "--noise": (("train", "sweep"), ["--noise", "0.2"], "obs_noise", 0.2),
    "--obs-noise levels": (("evaluate", "pomdp_study"), ["--obs-noise", "0", "0.2"], "obs_noise", [0.0, 0.2]),
    "--noise levels": (("evaluate", "pomdp_study"), ["--noise", "0", "0.2"], "obs_noise", [0.0, 0.2]),
    "--policies": (("sweep", "pomdp_study", "seqpred", "bench_vecenv"), ["--policies", "ltc,lstm"], "policies",
                   "ltc,lstm"),
    "--models": (("sweep", "pomdp_study", "seqpred", "bench_vecenv"), ["--models", "ltc,lstm"], "policies",
                 "ltc,lstm"),
    "--num-threads": (("train", "seqpred", "bench_ppo", "bench_vecenv", "bench_cell", "bench_memory_task"),
                      ["--num-threads", "3"],
                      "num_threads", 3),
    "--threads": (("train", "seqpred", "bench_ppo", "bench_vecenv", "bench_cell", "bench_memory_task"),
                  ["--threads", "3"],
                  "num_threads", 3),
    "--seed": (("train", "evaluate", "collect_traces", "sweep", "pomdp_study"), ["--seed", "4"], "seed", 4),
}
REQUIRED = {"evaluate": ["--model", "RUN"], "collect_traces": ["--out", "traces"]}


@pytest.mark.parametrize("flag", list(SHARED))
def test_shared_flags_parse_alike_in_every_script(flag):
    scripts, argv, attribute, expected = SHARED[flag]
    for script in scripts:
        args = _parser(script)([*REQUIRED.get(script, []), *argv])
        assert getattr(args, attribute) == expected, (script, flag)


@pytest.mark.parametrize("script", ["sweep", "pomdp_study"])
def test_seeds_mean_a_count_or_a_list_and_seed_one_seed(script):
    parse = _parser(script)
    from ltc_rl.cli import seeds_of

    assert seeds_of(parse(["--seeds", "3"])) == [0, 1, 2]
    assert seeds_of(parse(["--seeds", "0,4,7"])) == [0, 4, 7]
    assert seeds_of(parse(["--seeds", "0", "4"])) == [0, 4]
    assert seeds_of(parse(["--seed", "5"])) == [5]


def test_seed_lists_and_counts_parse_and_bad_ones_are_config_errors():
    assert parse_seeds("3") == [0, 1, 2] and parse_seeds("5,") == [5] and parse_seeds(["2", "9"]) == [2, 9]
    for bad in ("0", "x", "", ["a", "1"]):
        with pytest.raises(ConfigError, match="--seeds"):
            parse_seeds(bad)


def test_env_kwargs_take_rl_zoo_key_value_pairs():
    assert parse_env_kwargs(["g:5.0", "render_mode:rgb_array", "flags:[1, 2]", "on:true"]) == {
        "g": 5.0, "render_mode": "rgb_array", "flags": [1, 2], "on": True}
    with pytest.raises(ConfigError, match="is not KEY:VALUE"):
        parse_env_kwargs(["g=5"])


def test_evaluate_has_stochastic_not_deterministic_in_its_help(capsys):
    with pytest.raises(SystemExit):
        _parser("evaluate")(["--help"])
    text = capsys.readouterr().out
    assert "--stochastic" in text and "--deterministic" not in text
