"""Trained policies outside the trainer: light agents for custom control loops, export and evaluation.

``agents`` may import ``ltc_rl`` and ``envs``; ``ltc_rl`` never imports ``agents``.
"""

from agents.agent import LTCAgent
from agents.export import export_onnx, export_torchscript, load_torchscript
from agents.network import PolicyNetwork, network_from_policy
from ltc_rl.runs.run_folder import RunFolderError

__all__ = ["LTCAgent", "PolicyNetwork", "network_from_policy", "RunFolderError", "export_torchscript",
           "export_onnx", "load_torchscript"]
