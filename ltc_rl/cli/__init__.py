"""The commands of the project, one module each (``ltc_rl.cli.train`` ... installed as ``ltc-train`` ...;
``scripts/<name>.py`` runs them from a checkout), and here the flags they share, so that one flag means the
same in every command.

The commands are the top layer: they parse arguments and call ``ltc_rl``, ``envs`` and ``agents``; nothing
below them imports a command module.

``--total-timesteps N``, ``--seed N`` (one seed) / ``--seeds COUNT|LIST`` (several), ``--obs-noise SIGMA``,
``--policies a,b``, ``--num-threads N``, ``--env-kwargs key:value``, ``--gym-packages PKG``. Older spellings
(``--timesteps``, ``--noise``, ``--models``, ``--threads``) still parse, hidden from the help.
"""

from __future__ import annotations

import argparse
from collections.abc import Sequence
from typing import Any

import yaml

from ltc_rl.errors import ConfigError
from ltc_rl.parsing import parse_list, parse_seeds

__all__ = ["add_alias", "add_total_timesteps", "add_seeds", "parse_seeds", "seeds_of", "add_obs_noise", "add_policies",
           "add_num_threads", "add_env_arguments", "parse_env_kwargs", "parse_list"]


def add_alias(parser: argparse.ArgumentParser, alias: str, dest: str, **kwargs: Any) -> None:
    """A hidden older spelling ``alias`` of the flag stored in ``dest`` (same type and action)."""
    parser.add_argument(alias, dest=dest, help=argparse.SUPPRESS, **kwargs)


def add_total_timesteps(parser: argparse.ArgumentParser, default: int | None = None, help: str | None = None) -> None:
    """``--total-timesteps N`` (hidden alias ``--timesteps``)."""
    parser.add_argument("--total-timesteps", type=int, default=default,
                        help=help or f"environment steps (default {default})")
    add_alias(parser, "--timesteps", "total_timesteps", type=int)


def add_seeds(parser: argparse.ArgumentParser, default: int) -> None:
    """``--seeds COUNT`` (seeds 0..COUNT-1), ``--seeds 0,4,7`` / ``--seeds 0 4 7`` (those seeds) or ``--seed N``
    (that one seed); read them with :func:`seeds_of`."""
    group = parser.add_mutually_exclusive_group()
    group.add_argument("--seeds", nargs="+", default=[str(default)], metavar="COUNT|LIST",
                       help=f"a count (seeds 0..COUNT-1) or a list of seeds, e.g. 0,4,7 (default {default})")
    group.add_argument("--seed", type=int, help="one seed (the same as --seeds N,)")


def seeds_of(args: argparse.Namespace) -> list[int]:
    """The seeds :func:`add_seeds`'s flags ask for."""
    return [args.seed] if args.seed is not None else parse_seeds(args.seeds)


def add_obs_noise(parser: argparse.ArgumentParser, levels: bool = False, default: Any = None,
                  help: str | None = None) -> None:
    """``--obs-noise SIGMA`` (``levels``: several levels; hidden alias ``--noise``)."""
    nargs = "+" if levels else None
    parser.add_argument("--obs-noise", type=float, nargs=nargs, default=default, metavar="SIGMA",
                        help=help or "sigma of Gaussian observation noise")
    add_alias(parser, "--noise", "obs_noise", type=float, nargs=nargs)


def add_policies(parser: argparse.ArgumentParser, default: str, help: str) -> None:
    """``--policies a,b`` (comma-separated; hidden alias ``--models``)."""
    parser.add_argument("--policies", default=default, help=help)
    add_alias(parser, "--models", "policies")


def check_num_threads(value: int | None) -> int | None:
    """``--num-threads`` checked: None (torch's default) or an integer >= 1 (raises :class:`ConfigError`)."""
    if value is not None and value < 1:
        raise ConfigError(f"--num-threads must be >= 1, got {value}.")
    return value


def add_num_threads(parser: argparse.ArgumentParser, default: int | None = None) -> None:
    """``--num-threads N`` (torch CPU threads; hidden alias ``--threads``)."""
    parser.add_argument("--num-threads", type=int, default=default,
                        help=f"torch CPU threads (default {default if default is not None else 'torch default'})")
    add_alias(parser, "--threads", "num_threads", type=int)


def add_env_arguments(parser: argparse.ArgumentParser) -> None:
    """rl-zoo's ``--env-kwargs key:value ...`` and ``--gym-packages PKG ...``."""
    parser.add_argument("--env-kwargs", nargs="+", default=None, metavar="KEY:VALUE",
                        help="keyword arguments for gymnasium.make, e.g. --env-kwargs forward_reward_weight:2.0")
    parser.add_argument("--gym-packages", nargs="+", default=None, metavar="PACKAGE",
                        help="modules to import first: they register their environments with gymnasium")


def parse_env_kwargs(items: Sequence[str] | None) -> dict[str, Any]:
    """``["ctrl_cost_weight:0.1", "render_mode:rgb_array"]`` -> a dict (values parsed as YAML: numbers, bools, lists)."""
    kwargs: dict[str, Any] = {}
    for item in items or ():
        key, sep, text = item.partition(":")
        if not sep or not key.strip():
            raise ConfigError(f"--env-kwargs entry {item!r} is not KEY:VALUE (e.g. --env-kwargs "
                              "ctrl_cost_weight:0.1).")
        try:
            kwargs[key.strip()] = yaml.safe_load(text) if text.strip() else None
        except yaml.YAMLError:
            kwargs[key.strip()] = text
    return kwargs
