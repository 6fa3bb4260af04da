"""The sb3-contrib learning check (scripts/bench_memory_task.py) on a tiny budget: what it trains, measures and
prints; the real check (50k steps a run) is in BENCHMARKS.md."""

from __future__ import annotations

import gymnasium as gym
import pytest

import envs  # noqa: F401 - registers CartPoleNoVel-v1
from ltc_rl.bench import memory_task
from ltc_rl.bench.memory_task import THRESHOLD, CheckResult, format_results, run_check
from ltc_rl.cli import bench_memory_task as script
from ltc_rl.errors import ConfigError


def test_check_trains_each_candidate_records_its_evaluations_and_changes_our_policies_only(monkeypatch):
    built, lines = {}, []
    real = memory_task._build

    def spy(candidate, env, seed, policy_kwargs):
        built[candidate] = model = real(candidate, env, seed, policy_kwargs)
        return model

    monkeypatch.setattr(memory_task, "_build", spy)
    results = run_check(lambda: gym.make("CartPoleNoVel-v1"), ["ltc", "sb3-contrib-lstm"], [3], total_timesteps=1024,
                        eval_every=512, eval_episodes=2, policy_kwargs={"critic": "detached"}, progress=lines.append)
    assert [(r.candidate, r.seed) for r in results] == [("ltc", 3), ("sb3-contrib-lstm", 3)]
    for result in results:
        assert [step for step, _ in result.curve] == [512, 1024]
        assert 1.0 <= result.final_return <= 500.0 and result.passed == (result.final_return >= THRESHOLD)
    assert "ltc, seed 3: training 1,024 steps..." in lines
    assert built["ltc"].policy.critic == "detached" and built["ltc"].policy.units == 64
    assert built["sb3-contrib-lstm"].policy.lstm_critic is not None  # the anchor keeps its own recurrent critic


def test_table_lists_every_run_and_the_pass_count():
    results = [CheckResult("ltc", 0, 493.5, ((5000, 40.0), (10000, 420.0)), 1.0),
               CheckResult("ltc", 1, 341.0, ((5000, 37.0),), 1.0)]
    table = format_results(results)
    assert "| ltc | 0 | 40 | 420 | 493.5 (yes) |" in table and "| ltc | 1 | 37 | - | 341.0 (no) |" in table
    assert "ltc: passed on 1 of 2 seeds, mean final return 417.2" in table


def test_unknown_candidates_are_refused_in_one_line(capsys):
    with pytest.raises(ConfigError, match="unknown candidate"):
        run_check(lambda: gym.make("CartPoleNoVel-v1"), ["transformer"], [0])
    assert script.main(["--candidates", "ltc,gpt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and "unknown candidate(s) ['gpt']" in err and "\n" not in err


@pytest.mark.parametrize("hp, match", [(["features_extractor_class=linar"], "unknown features_extractor_class 'linar'"),
                                       (["cell=lstm"], "ltc does not take the policy keywords {'cell': 'lstm'}"),
                                       (["foo=1"], "unexpected keyword argument 'foo'")])
def test_bad_policy_keywords_are_one_line(hp, match, capsys):
    assert script.main(["--candidates", "ltc", "--seeds", "0,", "--total-timesteps", "64",
                        *(arg for value in hp for arg in ("--hp", value))]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("error: ") and match in err and "\n" not in err


def test_named_extractor_reaches_our_policies(monkeypatch):
    built = {}
    real = memory_task._build
    monkeypatch.setattr(memory_task, "_build", lambda c, e, s, k: built.setdefault(c, real(c, e, s, k)))
    assert script.main(["--candidates", "ltc", "--seeds", "0,", "--total-timesteps", "128", "--hp",
                        "features_extractor_class=linear", "--hp", "features_extractor_kwargs.features_dim=8"]) == 0
    assert type(built["ltc"].policy.pi_features_extractor).__name__ == "LinearExtractor"
    assert built["ltc"].policy.actor_cell.input_size == 8
