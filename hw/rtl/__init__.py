"""Amaranth 0.5 RTL of the accelerator datapath.

* :mod:`.vector_mac` -- C0-wide int8 dot product (``VectorMAC``);
* :mod:`.mac_array` -- a PE of K0 vector MACs with accumulators, and the array of PEs;
* :mod:`.postproc` -- bias, requantisation, ReLU and saturation (``PostProcessor``);
* :mod:`.buffers` -- single-read/single-write SRAM wrappers sized from the configuration;
* :mod:`.export` -- hierarchical Verilog export (each repeated block emitted once).
"""
