"""Control tasks for ltc_rl: one factory for training and evaluation, partially observable "NoVel" ids,
observation noise and irregular sampling.

``import envs`` registers the NoVel ids with gymnasium (``gym.make("HalfCheetahNoVel-v4")``) and stays light
(no simulator, no stable-baselines3: subprocess workers import it); :func:`make` shows the simulators'
repeated start-up warnings once per process (:mod:`ltc_rl.startup_messages`).
"""

from envs import wrappers
from envs.factory import make, make_vec
from envs.registration import (BASE_ENV_IDS, NOVEL_ENV_IDS, available_ids, check_env_id, import_gym_packages,
                                register_envs)
from envs.wrappers import ELAPSED_TIME_KEY, UPSIDE_DOWN_KEY, NonFiniteObservationError, control_dt

register_envs()

__all__ = [
    "make", "make_vec", "available_ids", "check_env_id", "import_gym_packages", "register_envs", "BASE_ENV_IDS",
    "NOVEL_ENV_IDS", "ELAPSED_TIME_KEY", "UPSIDE_DOWN_KEY", "NonFiniteObservationError", "control_dt", "wrappers",
]
