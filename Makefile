# Every target bootstraps the project virtual environment (.venv) on first use.
# Which variables a target takes: the table TAKES.<target> below; what each means: `make help`.

PYTHON_BOOT ?= python3
# One BLAS thread per process: the simulators run many small products, which threads only slow
# down on two cores (and pytest -n 2 runs two processes).  Override on the command line.
export OPENBLAS_NUM_THREADS ?= 1
VENV        := .venv
PY          := $(VENV)/bin/python
STAMP       := $(VENV)/.installed

MODEL   ?= segformer_b2
CFG     ?= E
VARIANT ?=
SIZE    ?=
CHECK   ?=
FUSION  ?=
OUT     ?=
FORMAT  ?=
ARGS    ?=

# A value quoted for the shell (spaces and quotes in paths survive)
q = '$(subst ','\'',$(1))'
# --option='value': a value that starts with "-" reaches the tool (which names it), not the parser
opt = $(if $(2),$(1)=$(call q,$(2)))
MODEL_ARGS = --model=$(call q,$(MODEL)) $(call opt,--variant,$(VARIANT)) $(call opt,--size,$(SIZE))
OUT_ARGS = $(call opt,--out,$(OUT)) $(call opt,--format,$(FORMAT))
# make paths and make rdd join several models (MODEL="segformer_b2 swin_tiny"); a MODEL that names
# one file is that file, spaces and all
MODELS_ARGS = $(if $(shell test -e $(call q,$(MODEL)) && echo file),--model=$(call q,$(MODEL)),$(foreach m,$(MODEL),--model=$(call q,$(m))))
# CHECK=1 turns the functional check on; CHECK= or CHECK=0 leaves it off; anything else is an error
CHECK_ARG = $(if $(filter-out 0 1,$(strip $(CHECK))),$(error CHECK must be 1 (check) or 0 (no check), not '$(CHECK)'),$(if $(filter 1,$(strip $(CHECK))),--check))

# FUSION=0 runs layer by layer (--no-fusion: no epilogue, no tensor kept in the global buffer); FUSION= or FUSION=1 fuses
FUSION_ARG = $(if $(filter-out 0 1,$(strip $(FUSION))),$(error FUSION must be 1 (fuse) or 0 (layer by layer, --no-fusion), not '$(FUSION)'),$(if $(filter 0,$(strip $(FUSION))),--no-fusion))

BUDGETS  ?=
ACCURACY ?=
CFGS      ?=
GRID      ?=
SCHEDULER ?=
IMAGE     ?=
SEED      ?=
CALIB_IMAGES ?=
SEEDS     ?=
CASES     ?=
CASE      ?=
JOBS      ?=
# execution paths for make paths, separated by ';' (quoted here, so the shell leaves the ';' alone)
PATHS     ?=

# The variables each target takes.  One given on make's command line to a target that does not
# take it is refused (a user would believe it took effect); make's own, a user's others, the
# environment's and PYTHON_BOOT (the Python that makes .venv, for any target) are left alone.
TAKES.help          :=
TAKES.venv          :=
TAKES.clean         :=
TAKES.sim           := MODEL VARIANT SIZE CFG CHECK FUSION SEED OUT FORMAT ARGS
TAKES.run           := MODEL VARIANT SIZE CFG CHECK IMAGE SEED CALIB_IMAGES OUT ARGS
TAKES.flops         := MODEL VARIANT SIZE OUT ARGS
TAKES.paths         := MODEL CFG ACCURACY PATHS OUT FORMAT ARGS
TAKES.rdd           := MODEL CFG BUDGETS ACCURACY OUT ARGS
TAKES.sweep         := MODEL VARIANT SIZE CFGS GRID CFG SCHEDULER OUT FORMAT ARGS
TAKES.onnx          := MODEL VARIANT SIZE SEED OUT ARGS
TAKES.config        := CFG OUT ARGS
TAKES.verilog       := CFG OUT ARGS
TAKES.synth         := CFG JOBS OUT ARGS
TAKES.verilog-bench := ARGS
TAKES.zoo-sweep     := ARGS
# the tests read SEED (tests/test_functional.py's random cases) and WAVES (Verilator waveforms)
# from the environment, where make puts its command line's variables
TAKES.test          := SEED WAVES ARGS
TAKES.regress       := SEED WAVES ARGS
TAKES.cosim         := WAVES ARGS
TAKES.cosim-e       := WAVES ARGS
TAKES.cosim-bench   := WAVES ARGS
TAKES.bench         := WAVES ARGS
TAKES.fuzz          := CFG SEEDS CASES CASE OUT WAVES ARGS
# Why a target takes no variable that a user may well expect it to (appended to the refusal)
# (SIZE: the tools' own text, sim/refused_options.py, read only when refusing)
WHY.paths.SIZE    = $(shell $(PYTHON_BOOT) sim/refused_options.py paths SIZE)
WHY.rdd.SIZE      = $(shell $(PYTHON_BOOT) sim/refused_options.py rdd SIZE)
WHY.paths.VARIANT = it runs every path of the model (choose paths with PATHS='$(VARIANT)')
WHY.rdd.VARIANT   = it runs every path of the model
WHY.run.FUSION    = it always fuses (its outputs are the same either way); FUSION is make sim's

comma := ,
empty :=
space := $(empty) $(empty)
CHECKED_VARS := $(sort $(foreach t,$(filter TAKES.%,$(.VARIABLES)),$(value $(t))))
# make with no goal runs help
GOALS := $(or $(MAKECMDGOALS),help)
# $(call takes_no,target,VAR): the one-line refusal (make exits with status 2)
takes_no = $(error make $(1) takes no $(2) (not '$($(2))')$(if $(WHY.$(1).$(2)),: $(WHY.$(1).$(2))); $(if $(TAKES.$(1)),its variables are $(subst $(space),$(comma)$(space),$(strip $(TAKES.$(1)))),it has no variables))
# an empty value (CHECK=) asks for nothing, so it is no mistake
given = $(and $(filter command line,$(origin $(1))),$(strip $($(1))))
$(foreach g,$(GOALS),$(if $(filter-out undefined,$(origin TAKES.$(g))),$(foreach v,$(filter-out $(TAKES.$(g)),$(CHECKED_VARS)),$(if $(call given,$(v)),$(call takes_no,$(g),$(v))))))

.PHONY: help venv flops sim run paths rdd sweep onnx config test regress zoo-sweep cosim fuzz cosim-e cosim-bench bench verilog verilog-bench synth clean

help:
	@echo "make sim   MODEL=segformer_b2 CFG=E [VARIANT=B2_c] [SIZE=HxW] [CHECK=1] [FUSION=0]   simulate a network"
	@echo "make run   MODEL=segformer_b2 CFG=E [IMAGE=photo.png] [SEED=n] [SIZE=HxW] [CALIB_IMAGES=k]  inference on the simulated accelerator"
	@echo "make flops MODEL=segformer_b2 [VARIANT=...] [SIZE=HxW]         per-layer MAC analysis"
	@echo "make paths MODEL=segformer_b2 CFG=E [ACCURACY=file.csv] [PATHS='full;B2_a']  execution paths vs accuracy (Figs. 10-13)"
	@echo "make rdd   MODEL=segformer_b2 CFG=E [BUDGETS=trace.csv]        RDD runtime over a budget trace"
	@echo "make sweep MODEL=segformer_b2 [CFGS=A,B,...] [SCHEDULER=tcp://host:port]  configs' Pareto front (Fig. 6)"
	@echo "make sweep MODEL=... GRID=\"num_pe=8,16 k0=16,32 weight_kib=64,128\" [CFG=E]   any grid of fields over CFG"
	@echo "make onnx  MODEL=segformer_b2 [VARIANT=...] [SIZE=HxW] [SEED=n] [OUT=dir]  a zoo model as ONNX with its weights"
	@echo "make config CFG=E [OUT=file.toml or dir]                       a configuration as an accelerator file"
	@echo "    MODEL may be a .onnx file and CFG a .toml file wherever they are taken (docs/onnx.md, docs/config.md)"
	@echo "    each writes a folder named by its inputs under build/, or OUT=dir; FORMAT=png|pdf|svg for plots"
	@echo "make test                                                      the test suite (CI), without slow tests"
	@echo "make regress                                                   the whole suite, slow tests included (the hardware regression)"
	@echo "make zoo-sweep                                                 every zoo model mapped on every preset (about 30 CPU minutes)"
	@echo "make cosim [WAVES=1]                                           Verilator/cocotb cosimulation tests, slow ones included"
	@echo "make fuzz  CFG=tiny SEEDS=100-110 [CASES=1200] [CASE=seed:index]  simulator-vs-RTL differential fuzz campaign"
	@echo "make cosim-e                                                   configuration E's Accelerator in Verilator on representative layers"
	@echo "make cosim-bench                                               Verilator build time and cycles/s -> build/bench/cosim.json"
	@echo "make bench                                                     benchmarks -> build/bench/*.json"
	@echo "make verilog CFG=E                                             accelerator Verilog, files.f, config.json -> build/verilog/CFG"
	@echo "make verilog-bench                                             export every preset: time, size, Yosys stats -> build/bench/verilog.json"
	@echo "make synth CFG=E [JOBS=2]                                      Yosys, each module once: cells, flip-flops, memory bits, logic depth -> build/synth/CFG"
	@echo "    (slow: E 20-60 minutes on 2 cores, a configuration with the vector unit longer; a line per module as it starts and ends)"

$(STAMP): pyproject.toml
	@test -x $(PY) || $(PYTHON_BOOT) -m venv $(VENV)
	$(PY) -m pip install -q --upgrade pip
	$(PY) -m pip install -q -e '.[dev]'
	@touch $@

venv: $(STAMP)

flops: $(STAMP)
	$(PY) -m mapper.flops $(MODEL_ARGS) $(call opt,--out,$(OUT)) $(ARGS)

sim: $(STAMP)
	$(PY) -m sim.run $(MODEL_ARGS) --config=$(call q,$(CFG)) $(CHECK_ARG) $(FUSION_ARG) $(call opt,--seed,$(SEED)) $(OUT_ARGS) $(ARGS)

run: $(STAMP)
	$(if $(filter-out 1,$(strip $(CHECK))),$(error make run always checks every tensor; CHECK must be empty or 1, not '$(CHECK)'))
	$(PY) -m sim.infer $(MODEL_ARGS) --config=$(call q,$(CFG)) $(call opt,--image,$(IMAGE)) $(call opt,--seed,$(SEED)) $(call opt,--calib-images,$(CALIB_IMAGES)) $(call opt,--out,$(OUT)) $(ARGS)

paths: $(STAMP)
	$(PY) -m sim.paths $(MODELS_ARGS) --config=$(call q,$(CFG)) $(call opt,--accuracy,$(ACCURACY)) $(call opt,--paths,$(PATHS)) $(OUT_ARGS) $(ARGS)

rdd: $(STAMP)
	$(PY) -m sim.rdd $(MODELS_ARGS) --config=$(call q,$(CFG)) $(call opt,--budgets,$(BUDGETS)) $(call opt,--accuracy,$(ACCURACY)) $(call opt,--out,$(OUT)) $(ARGS)

sweep: $(STAMP)
	$(PY) -m sim.sweep $(MODEL_ARGS) $(call opt,--configs,$(CFGS)) $(if $(GRID),--grid=$(call q,$(GRID)))$(if $(GRID)$(call given,CFG), --base=$(call q,$(CFG))) $(call opt,--scheduler,$(SCHEDULER)) $(OUT_ARGS) $(ARGS)

onnx: $(STAMP)
	$(PY) -m mapper.onnx_export $(MODEL_ARGS) $(call opt,--seed,$(SEED)) $(call opt,--out,$(OUT)) $(ARGS)

config: $(STAMP)
	@$(PY) -m hw.config_file --config=$(call q,$(CFG)) $(call opt,--out,$(OUT)) $(ARGS)

# Two workers taking one test (or one module sharing a fixture) at a time, in the order of
# tests/conftest.py (longest first; no reordering by group size).
XDIST := -n 2 --dist loadgroup --no-loadscope-reorder

test: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not slow" tests $(ARGS)

regress: $(STAMP)
	$(PY) -m pytest -q $(XDIST) -m "not zoo_sweep" tests $(ARGS)

zoo-sweep: $(STAMP)
	$(PY) -m pytest -q $(XDIST) "tests/test_encode_all.py::test_every_zoo_stream_encodes" $(ARGS)

cosim: $(STAMP)
	$(PY) -m pytest -q $(XDIST) tests/cosim $(ARGS)

# make fuzz runs on a test configuration: tiny unless CFG is given
FUZZ_CFG = $(if $(filter command line environment,$(origin CFG)),$(CFG),tiny)
fuzz: $(STAMP)
	$(PY) tests/cosim/campaign.py --config=$(call q,$(FUZZ_CFG)) $(call opt,--seeds,$(SEEDS)) $(call opt,--cases,$(CASES)) $(call opt,--case,$(CASE)) $(call opt,--out,$(OUT)) $(ARGS)

cosim-e: $(STAMP)
	COSIM_E=1 $(PY) -m pytest -q -s tests/cosim/test_cosim_e.py $(ARGS)

cosim-bench: $(STAMP)
	$(PY) tests/cosim/bench.py $(ARGS)

bench: $(STAMP)
	$(PY) -m sim.bench $(ARGS)
	$(PY) -m hw.rtl.bench
	$(PY) tests/cosim/bench.py
# bench's ARGS are sim.bench's options, not pytest's: cosim-e must not inherit them
	$(MAKE) cosim-e ARGS=

verilog: $(STAMP)
	$(PY) -m hw.rtl.export --config=$(call q,$(CFG)) $(call opt,--out,$(OUT)) $(ARGS)

verilog-bench: $(STAMP)
	$(PY) -m hw.rtl.bench $(ARGS)

synth: $(STAMP)
	$(PY) -m hw.rtl.synth --config=$(call q,$(CFG)) $(call opt,--jobs,$(JOBS)) $(call opt,--out,$(OUT)) $(ARGS)

clean:
	rm -rf build
