"""Reinforcement learning with recurrent (LTC, NCP, CfC, LSTM, GRU) policies: recurrent PPO, SB3-style."""

from ltc_rl.rl.buffers import RecurrentRolloutBuffer, RecurrentSequenceSamples
from ltc_rl.rl.elapsed_time import DEFAULT_ELAPSED_TIME, ELAPSED_TIME_KEY, elapsed_times
from ltc_rl.rl.policies import (CnnCfcPolicy, CnnGruPolicy, CnnLstmPolicy, CnnLtcPolicy, CnnRecurrentPolicy,
                                MlpCfcPolicy, MlpGruPolicy, MlpLstmPolicy, MlpLtcPolicy, MultiInputCfcPolicy,
                                MultiInputGruPolicy, MultiInputLstmPolicy, MultiInputLtcPolicy,
                                MultiInputRecurrentPolicy, RecurrentActorCriticPolicy)
from ltc_rl.rl.ppo import RecurrentPPO

__all__ = ["ELAPSED_TIME_KEY", "DEFAULT_ELAPSED_TIME", "elapsed_times", "RecurrentRolloutBuffer",
           "RecurrentSequenceSamples", "RecurrentActorCriticPolicy", "MlpLtcPolicy", "MlpCfcPolicy", "MlpLstmPolicy",
           "MlpGruPolicy", "CnnRecurrentPolicy", "CnnLtcPolicy", "CnnCfcPolicy", "CnnLstmPolicy", "CnnGruPolicy",
           "MultiInputRecurrentPolicy", "MultiInputLtcPolicy", "MultiInputCfcPolicy", "MultiInputLstmPolicy",
           "MultiInputGruPolicy", "RecurrentPPO"]
