"""ltc_rl: reinforcement-learning control with Liquid Time-Constant networks and neural circuit policies.

The public names below are imported on first use (PEP 562), so ``import ltc_rl`` and light submodules
(``ltc_rl.wirings``, ``ltc_rl.errors``) do not pull in torch or stable-baselines3, e.g. in every
subprocess environment worker.
"""

from __future__ import annotations

import importlib
from typing import TYPE_CHECKING, Any

__version__ = "0.1.0"

#: Public name -> the module that defines it.
_LAZY: dict[str, str] = {
    **dict.fromkeys(("RecurrentCell", "LTCCell", "CfCCell", "CTRNNCell", "NODECell", "CTGRUCell", "LSTMCell",
                     "GRUCell", "CELL_TYPES", "make_cell"), "ltc_rl.cells"),
    **dict.fromkeys(("from_ncps", "load_ncps_state_dict"), "ltc_rl.ncps_compat"),
    **dict.fromkeys(("RNN", "LTC", "CfC"), "ltc_rl.sequence"),
    **dict.fromkeys(("RecurrentPPO", "MlpLtcPolicy", "MlpCfcPolicy", "MlpLstmPolicy", "MlpGruPolicy"), "ltc_rl.rl"),
}

__all__ = [
    "wirings", "RecurrentCell", "LTCCell", "CfCCell", "CTRNNCell", "NODECell", "CTGRUCell", "LSTMCell", "GRUCell",
    "CELL_TYPES", "make_cell", "RNN", "LTC", "CfC", "from_ncps", "load_ncps_state_dict", "__version__",
    "RecurrentPPO", "MlpLtcPolicy", "MlpCfcPolicy", "MlpLstmPolicy", "MlpGruPolicy",
]

if TYPE_CHECKING:
    from ltc_rl import wirings
    from ltc_rl.cells import (CELL_TYPES, CfCCell, CTGRUCell, CTRNNCell, GRUCell, LSTMCell, LTCCell, NODECell,
                              RecurrentCell, make_cell)
    from ltc_rl.ncps_compat import from_ncps, load_ncps_state_dict
    from ltc_rl.rl import MlpCfcPolicy, MlpGruPolicy, MlpLstmPolicy, MlpLtcPolicy, RecurrentPPO
    from ltc_rl.sequence import LTC, RNN, CfC


def __getattr__(name: str) -> Any:
    """Imports a public name's module on first access and caches the name in this module."""
    if name == "wirings":
        value: Any = importlib.import_module("ltc_rl.wirings")
    elif name in _LAZY:
        value = getattr(importlib.import_module(_LAZY[name]), name)
    else:
        raise AttributeError(f"module 'ltc_rl' has no attribute {name!r}")
    globals()[name] = value
    return value


def __dir__() -> list[str]:
    return sorted({*globals(), *__all__})
