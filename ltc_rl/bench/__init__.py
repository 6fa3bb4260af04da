"""Benchmarks: the LTC cell against ncps (:mod:`~ltc_rl.bench.cell`, with the interleaved latency timer),
PPO throughput against sb3-contrib (:mod:`~ltc_rl.bench.ppo`, with the rollout timer), and in-process against
subprocess environments (:mod:`~ltc_rl.bench.vecenv`). The scripts ``scripts/bench_*.py`` run them."""
