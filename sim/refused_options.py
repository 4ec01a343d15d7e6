"""Options a tool refuses although a user may well expect it to take them, and why.

``WHY_NOT`` is the one text that both ``python -m sim.paths --size 64x64`` and ``make paths
SIZE=64x64`` give (the Makefile's ``WHY.<target>.<VAR>`` runs this file).  Standard library only:
make runs it with the system Python, before ``.venv`` exists, and only to print a refusal.
"""

from __future__ import annotations

import argparse
import sys

_AT_OWN_SIZE = ("it simulates every path at the model's own input size, where its accuracies were measured "
                "(time one size with make sim SIZE=HxW)")
#: (tool, option without dashes) -> why the tool takes no such option.
WHY_NOT = {("paths", "size"): _AT_OWN_SIZE, ("rdd", "size"): _AT_OWN_SIZE}


class _Refused(argparse.Action):
    def __call__(self, parser, namespace, value, option_string=None):
        parser.error(f"{option_string} {value}: {parser.prog} takes no {option_string}: {self.help_why}")


def add_refused_options(parser: argparse.ArgumentParser, tool: str) -> None:
    """Every option of ``WHY_NOT`` for ``tool`` on ``parser``, refused with its reason (argparse would
    say only "unrecognized arguments"); not in ``--help``."""
    for (name, option), why in WHY_NOT.items():
        if name == tool:
            action = parser.add_argument(f"--{option}", dest=f"refused_{option}", action=_Refused,
                                         help=argparse.SUPPRESS)
            action.help_why = why


if __name__ == "__main__":          # make: python3 sim/refused_options.py paths SIZE
    print(WHY_NOT.get((sys.argv[1], sys.argv[2].lower()), ""))
