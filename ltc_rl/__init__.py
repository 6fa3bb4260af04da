"""ltc_rl: reinforcement-learning control with Liquid Time-Constant networks and neural circuit policies."""

from ltc_rl import wirings
from ltc_rl.cells import (CELL_TYPES, CfCCell, CTGRUCell, CTRNNCell, GRUCell, LSTMCell, LTCCell, NODECell,
                          RecurrentCell, make_cell)
from ltc_rl.ncps_compat import from_ncps, load_ncps_state_dict
from ltc_rl.sequence import LTC, RNN, CfC
from ltc_rl.rl import MlpCfcPolicy, MlpGruPolicy, MlpLstmPolicy, MlpLtcPolicy, RecurrentPPO

__version__ = "0.1.0"

__all__ = [
    "wirings", "RecurrentCell", "LTCCell", "CfCCell", "CTRNNCell", "NODECell", "CTGRUCell", "LSTMCell", "GRUCell",
    "CELL_TYPES", "make_cell", "RNN", "LTC", "CfC", "from_ncps", "load_ncps_state_dict", "__version__",
    "RecurrentPPO", "MlpLtcPolicy", "MlpCfcPolicy", "MlpLstmPolicy", "MlpGruPolicy",
]
