"""Everything about a run folder: its layout, atomic writes, the training pipeline that fills it (callbacks,
guards, checkpoints, resume), the sweeps that fill many, and :class:`~ltc_rl.runs.run_folder.RunFolder`, the one
reader of a finished or interrupted run.

The package root imports nothing, so that ``ltc_rl.runs.layout`` and ``ltc_rl.runs.files`` stay light; import
the modules themselves (``from ltc_rl.runs.training import train``).
"""
