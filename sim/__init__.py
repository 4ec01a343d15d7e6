"""Golden model, cycle-level simulator, energy and area models."""

import hw  # noqa: F401  (first: a tool interrupted while it imports ends with one line, hw/tool_start.py)
