"""The LTC paper's offline sequence-prediction evaluation (Half-Cheetah kinematics).

``load_splits`` cuts a folder of trace files into the paper's splits, ``build_predictor`` and
``train_predictor`` train one model with best-validation checkpointing; ``collect_traces`` records
trace files from any environment and policy. The study that runs every model for every seed and
writes the table, CSVs and plot is :mod:`ltc_rl.studies.seqpred`.
"""

from ltc_rl.seqpred.data import SequenceSplit, SequenceSplits, cut_windows, list_traces, load_splits, load_trace
from ltc_rl.seqpred.models import (SEQPRED_MODELS, SequencePredictor, build_predictor, count_parameters,
                                   learning_rate_for)
from ltc_rl.seqpred.traces import collect_traces, random_policy
from ltc_rl.seqpred.training import RunResult, TrainConfig, prediction_errors, train_predictor

__all__ = ["SequenceSplit", "SequenceSplits", "cut_windows", "list_traces", "load_splits", "load_trace",
           "SEQPRED_MODELS", "SequencePredictor", "build_predictor", "count_parameters", "learning_rate_for",
           "collect_traces", "random_policy", "RunResult", "TrainConfig", "prediction_errors", "train_predictor"]
