"""Workloads (layer IR and model zoo), dynamic execution paths, and lowering to instruction streams."""

import hw  # noqa: F401  (first: a tool interrupted while it imports ends with one line, hw/tool_start.py)
