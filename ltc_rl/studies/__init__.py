"""Studies built from many training runs: the multi-seed RL benchmark (:mod:`ltc_rl.studies.rl_benchmark`) and
its rliable report (:mod:`ltc_rl.studies.rl_report`).

Nothing is imported here, so ``import ltc_rl.studies`` stays cheap; import the modules themselves.
"""
