"""Workloads (layer IR and model zoo), dynamic execution paths, and lowering to instruction streams."""
