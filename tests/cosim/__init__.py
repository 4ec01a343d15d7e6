"""Verilator + cocotb cosimulation of the exported RTL (see docs/cosim.md)."""
