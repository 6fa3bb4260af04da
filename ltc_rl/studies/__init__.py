"""Studies built from many training runs: the multi-seed RL benchmark (:mod:`ltc_rl.studies.rl_benchmark`) and
its rliable report (:mod:`ltc_rl.studies.rl_report`), the sequence-prediction study
(:mod:`ltc_rl.studies.seqpred`, with :mod:`ltc_rl.studies.seqpred_report`) and the trajectory-length
expressivity study (:mod:`ltc_rl.studies.trajectory_length`). The POMDP / robustness study evaluates agents,
so it lives with them (:mod:`agents.pomdp_study`).

Nothing is imported here, so ``import ltc_rl.studies`` stays cheap; import the modules themselves.
"""
