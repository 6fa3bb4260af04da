"""Checking a ``--device`` before anything is loaded, built or written: one clear line for an unknown
device, one this project does not run on, or a CUDA device this machine does not have (torch itself
reports these deep inside loading, with messages that blame the model file)."""

from __future__ import annotations

import torch

from ltc_rl.errors import ConfigError

__all__ = ["check_device"]


def check_device(device: str, allow_auto: bool = False) -> str:
    """``device`` unchanged if usable here (``cpu``, ``cuda``, ``cuda:N``; ``auto`` with ``allow_auto``);
    raises :class:`ConfigError` otherwise."""
    choices = "auto, cpu or cuda" if allow_auto else "cpu or cuda"
    if allow_auto and device == "auto":
        return device
    try:
        parsed = torch.device(device)
    except (RuntimeError, TypeError) as exc:
        raise ConfigError(f"unknown device {device!r}; use {choices}.") from exc
    if parsed.type not in ("cpu", "cuda"):
        raise ConfigError(f"unsupported device {device!r}; use {choices}.")
    if parsed.type == "cuda":
        if not torch.cuda.is_available():
            raise ConfigError(f"device {device!r} requested but no CUDA device is available; use --device cpu.")
        if parsed.index is not None and parsed.index >= torch.cuda.device_count():
            raise ConfigError(f"device {device!r} requested but this machine has {torch.cuda.device_count()} CUDA "
                              "device(s); use --device cuda:0.")
    return device
