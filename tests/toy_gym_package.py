"""A user's own gymnasium package for the tests: importing it registers ``ToyDrift-v0`` (``--gym-packages``).

The task has no ``dt`` or ``tau`` attribute (its period is unknown) and no hyperparameter entry in the shipped
YAML files, as a user's task would.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

ENV_ID = "ToyDrift-v0"


class ToyDrift(gym.Env):
    """A point drifting by ``drift`` per step; the action pushes it back; reward: minus its distance to 0."""

    def __init__(self, drift: float = 0.1) -> None:
        self.drift = float(drift)
        self.observation_space = spaces.Box(-np.inf, np.inf, shape=(3,), dtype=np.float32)
        self.action_space = spaces.Box(-1.0, 1.0, shape=(1,), dtype=np.float32)
        self.position = np.zeros(3, dtype=np.float32)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.position = self.np_random.normal(size=3).astype(np.float32)
        return self.position.copy(), {}

    def step(self, action):
        self.position = (self.position + self.drift - float(np.asarray(action).ravel()[0])).astype(np.float32)
        return self.position.copy(), -float(np.abs(self.position).sum()), False, False, {}


if ENV_ID not in gym.registry:
    gym.register(id=ENV_ID, entry_point=ToyDrift, max_episode_steps=16)
