"""Hardware: the accelerator configuration, the ISA and the Amaranth RTL generator."""

from .tool_start import cover_the_imports

cover_the_imports()     # a tool interrupted while it imports: one line, status 130
