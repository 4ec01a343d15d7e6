"""Amaranth 0.5 RTL of the accelerator, one component per file, joined by the buses of :mod:`.buses`.

* :mod:`.accelerator` -- the top level (``Accelerator``): instantiates the blocks below and
  connects them;
* :mod:`.dispatch` -- instruction fetch, registered decode and dispatch, malformed streams refused;
* :mod:`.fifo` -- the instruction queues and the token FIFOs;
* :mod:`.load_unit`, :mod:`.compute_unit`, :mod:`.store_unit` -- the three units with their
  timing shells (:mod:`.unit`: what they share); :mod:`.load_inp` -- the LOAD_INP address
  generator; :mod:`.global_buffer` -- the banked global buffer;
* :mod:`.pe_array` -- the ``num_pe`` PEs; :mod:`.pe_tile` -- one PE with its memories, K0 vector
  MACs and K0 post-processing lanes; :mod:`.vector_mac` -- C0-wide int8 dot product;
  :mod:`.postproc` -- bias, requantisation, ReLU or a table activation, saturation;
  :mod:`.table_memory` -- a PE's table memory, one read port per post-processing lane;
* :mod:`.buses` -- the signatures between the blocks; :mod:`.insn` -- the instruction word's layouts;
* :mod:`.export` -- hierarchical Verilog export (every block a module, each emitted once);
* :mod:`.synth` -- ``make synth``: Yosys synthesis of each unique module once, with
  :mod:`.logic_depth` (logic levels through the hierarchy);
* :mod:`.bench` -- export time and size of every preset, synthesis of some.
"""
