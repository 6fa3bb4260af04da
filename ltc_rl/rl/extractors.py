"""Features extractors a policy can put before its recurrent cells, and the names a config file uses for them.

:class:`LinearExtractor` is a learned linear layer (``observation -> features_dim``, no activation): the LTC's
sensory synapses then see learned linear combinations of the observation instead of each raw (normalised)
observation on its own, and the cell still supplies the nonlinearity (each sensory synapse is a sigmoid).
On HalfCheetah-v4 it gave the most noise-robust LTC policy measured (BENCHMARKS.md, "Why the LSTM is ahead on
HalfCheetah-v4").

Config files and ``--hp`` name an extractor by its key in :data:`FEATURES_EXTRACTORS`
(``policy_kwargs.features_extractor_class=linear``, ``policy_kwargs.features_extractor_kwargs.features_dim=128``),
as they name activations: nothing in a file is imported or evaluated.
"""

from __future__ import annotations

import gymnasium as gym
from gymnasium import spaces
from stable_baselines3.common.torch_layers import (BaseFeaturesExtractor, CombinedExtractor, FlattenExtractor,
                                                   NatureCNN)
from torch import Tensor, nn

__all__ = ["LinearExtractor", "FEATURES_EXTRACTORS"]


class LinearExtractor(BaseFeaturesExtractor):
    """Flattens a Box observation and maps it to ``features_dim`` features with one learned linear layer."""

    def __init__(self, observation_space: gym.Space, features_dim: int = 128) -> None:
        if not isinstance(observation_space, spaces.Box):
            raise ValueError(f"features_extractor_class=linear needs a Box observation space, got "
                             f"{type(observation_space).__name__}; use 'combined' for Dict observations.")
        if isinstance(features_dim, bool) or not isinstance(features_dim, int) or features_dim < 1:
            raise ValueError(f"features_extractor_kwargs.features_dim must be an integer >= 1, got {features_dim!r}.")
        super().__init__(observation_space, features_dim)
        self.flatten = nn.Flatten()
        self.linear = nn.Linear(int(spaces.flatdim(observation_space)), features_dim)

    def forward(self, observations: Tensor) -> Tensor:
        return self.linear(self.flatten(observations))


#: The features extractors a config file may name, by the name it uses.
FEATURES_EXTRACTORS: dict[str, type[BaseFeaturesExtractor]] = {
    "flatten": FlattenExtractor, "linear": LinearExtractor, "nature_cnn": NatureCNN, "combined": CombinedExtractor}
