"""Small environments and wrappers the tests train and check on (importing this module registers nothing).

``toy_gym_package`` is the other test environment: a package that registers its task on import, as a user's
``--gym-packages`` would.
"""

from __future__ import annotations

import gymnasium as gym
import numpy as np
from gymnasium import spaces

from ltc_rl.env_api import ELAPSED_TIME_KEY

__all__ = ["CueRecall", "CartPoleNoVelocity", "ReportsElapsedTime", "NaNAfter"]


class CueRecall(gym.Env):
    """A +/-1 cue at the first step, ``delay`` blank steps, then the answer: reward +1 if right, -1 if wrong.

    A feed-forward policy sees the same observation at the answer step whatever the cue, so its expected
    return is 0; only memory gets +1.
    """

    def __init__(self, delay: int = 3) -> None:
        self.delay = delay
        self.observation_space = spaces.Box(-1.0, 1.0, (2,), np.float32)
        self.action_space = spaces.Discrete(2)

    def reset(self, *, seed: int | None = None, options: dict | None = None):
        super().reset(seed=seed)
        self.cue, self.t = int(self.np_random.integers(2)), 0
        return np.array([2 * self.cue - 1, 0.0], np.float32), {}

    def step(self, action):
        self.t += 1
        if self.t <= self.delay:
            return np.array([0.0, float(self.t == self.delay)], np.float32), 0.0, False, False, {}
        return np.zeros(2, np.float32), 1.0 if int(action) == self.cue else -1.0, True, False, {}


class CartPoleNoVelocity(gym.ObservationWrapper):
    """CartPole observing only the cart position and pole angle (velocities hidden)."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.observation_space = spaces.Box(env.observation_space.low[[0, 2]], env.observation_space.high[[0, 2]])

    def observation(self, observation):
        return observation[[0, 2]].astype(np.float32)


class ReportsElapsedTime(gym.Wrapper):
    """Reports a random elapsed time in every step info and a fixed one at reset."""

    def __init__(self, env: gym.Env) -> None:
        super().__init__(env)
        self.rng = np.random.default_rng(0)

    def reset(self, **kwargs):
        obs, info = self.env.reset(**kwargs)
        return obs, {**info, ELAPSED_TIME_KEY: 0.5}

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        return obs, reward, terminated, truncated, {**info, ELAPSED_TIME_KEY: float(self.rng.uniform(0.1, 2.0))}


class NaNAfter(gym.Wrapper):
    """CartPole whose observations turn NaN after ``after`` steps, in copies reset with an odd seed only."""

    def __init__(self, env: gym.Env, after: int = 3, what: str = "observation") -> None:
        super().__init__(env)
        self.after, self.what, self.poisoned, self.t = after, what, False, 0

    def reset(self, *, seed=None, options=None):
        if seed is not None:
            self.poisoned = seed % 2 == 1
        self.t = 0
        return self.env.reset(seed=seed, options=options)

    def step(self, action):
        obs, reward, terminated, truncated, info = self.env.step(action)
        self.t += 1
        if self.poisoned and self.t >= self.after:
            if self.what == "observation":
                obs = np.full_like(obs, np.nan)
            else:
                reward = float("inf")
        return obs, reward, terminated, truncated, info
