"""Hardware: the accelerator configuration, the ISA and the Amaranth RTL generator."""
