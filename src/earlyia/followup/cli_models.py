"""``earlyia models list|promote|rollback``: the follow-up registry's actions, found by ``earlyia.cli.models``."""

from __future__ import annotations

import argparse


def register_actions(actions: argparse._SubParsersAction) -> None:
    """Hook called by :mod:`earlyia.cli.models` (see its ``EXTENSIONS``)."""
    from earlyia.cli.followup import add_models_commands

    add_models_commands(actions)
