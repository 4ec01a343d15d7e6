"""Amaranth 0.5 RTL of the accelerator.

* :mod:`.accelerator` -- the top level (``Accelerator``): instruction fetch and dispatch,
  the LOAD / COMPUTE / STORE queues and units, token FIFOs, error reporting;
* :mod:`.pe_tile` -- one PE as built into the accelerator (``PETile``): its input, weight,
  parameter and accumulation memories, K0 vector MACs and K0 post-processing lanes;
* :mod:`.global_buffer` -- the banked global buffer;
* :mod:`.vector_mac` -- C0-wide int8 dot product (``VectorMAC``);
* :mod:`.postproc` -- bias, requantisation, ReLU and saturation (``PostProcessor``);
* :mod:`.buffers` -- single-read/single-write SRAM wrappers sized from the configuration;
* :mod:`.mac_array` -- a bare MAC datapath (PE and array without memories or control), the
  first block built; not part of ``Accelerator``, kept for its datapath and toolchain tests;
* :mod:`.export` -- hierarchical Verilog export (each repeated block emitted once);
* :mod:`.synth` -- ``make synth``: Yosys synthesis of each unique module once, with
  :mod:`.logic_depth` (logic levels through the hierarchy);
* :mod:`.bench` -- export time and size of every preset, synthesis of some.
"""
