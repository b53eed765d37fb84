# keel build. `make` builds build/keel and build/libkeel.a; `make test` sets up
# and runs every test; `make demo` sets up and runs the bundled default job.

CC      ?= cc
CFLAGS  ?= -O2 -g
WARN    := -Wall -Wextra -Wshadow -Wno-unused-parameter
# -fno-math-errno: keel never reads errno after sqrtf/expf, and with it set GCC keeps such
# loops scalar (a call per element for the errno path)
BASE    := -std=c11 -D_GNU_SOURCE -pthread -MMD -MP -fno-math-errno $(WARN)
OPENMP  := -fopenmp
LDLIBS  := -ljansson -lxxhash -lm -pthread -fopenmp
BUILD   ?= build

LIB_SRC := $(sort $(filter-out src/cli/%,$(wildcard src/*/*.c src/*/*/*.c)))
CLI_SRC := $(sort $(wildcard src/cli/*.c))
UNIT    := $(sort $(wildcard tests/unit/test_*.c))
FUZZ    := $(sort $(wildcard tests/fuzz/fuzz_*.c))

LIB_OBJ := $(LIB_SRC:%.c=$(BUILD)/%.o)
CLI_OBJ := $(CLI_SRC:%.c=$(BUILD)/%.o)
UNIT_BIN := $(UNIT:tests/unit/%.c=$(BUILD)/tests/%)

# Optional parts: detected, reported by `make features` and `keel features`.
have = $(shell printf '#include <$(1)>\nint main(void){return 0;}\n' | $(CC) -x c - -o /dev/null $(2) 2>/dev/null && echo 1 || echo 0)
HAVE_JANSSON := $(call have,jansson.h,-ljansson)
HAVE_XXHASH  := $(call have,xxhash.h,-lxxhash)
HAVE_MHD     := $(call have,microhttpd.h,-lmicrohttpd)
HAVE_MPI     := $(shell command -v mpicc >/dev/null 2>&1 && echo 1 || echo 0)
HAVE_OPENCL  := $(call have,CL/cl.h,-lOpenCL)
HAVE_CUDA    := $(shell command -v nvcc >/dev/null 2>&1 && echo 1 || echo 0)
HAVE_ZSTD    := $(call have,zstd.h,-lzstd)
HAVE_OPENBLAS := $(call have,cblas.h,-lopenblas)
HAVE_FUZZER  := $(shell echo 'int LLVMFuzzerTestOneInput(const char*d,unsigned long n){return 0;}' | clang -x c - -fsanitize=fuzzer -o /dev/null 2>/dev/null && echo 1 || echo 0)
FEATURES := -DKEEL_HAVE_MHD=$(HAVE_MHD) -DKEEL_HAVE_MPI=$(HAVE_MPI) -DKEEL_HAVE_OPENCL=$(HAVE_OPENCL) \
            -DKEEL_HAVE_CUDA=$(HAVE_CUDA) -DKEEL_HAVE_ZSTD=$(HAVE_ZSTD) -DKEEL_HAVE_OPENBLAS=$(HAVE_OPENBLAS)

ALL_CFLAGS = $(BASE) $(OPENMP) $(CFLAGS) $(FEATURES)
ifeq ($(HAVE_MHD),1)
LDLIBS += -lmicrohttpd
endif

.PHONY: all lib keel test demo asan isa fuzz features setup unit clean bench
all: check-deps $(BUILD)/keel $(BUILD)/libkeel.a

check-deps:
	@if [ "$(HAVE_JANSSON)$(HAVE_XXHASH)" != "11" ]; then \
	  echo "keel needs libjansson-dev and libxxhash-dev: run scripts/setup.sh (or make test / make demo)"; exit 1; fi

features:
	@yn() { if [ "$$1" = 1 ]; then echo "✓"; else echo "✗"; fi; }; \
	echo "required:"; \
	echo "  $$(yn $(HAVE_JANSSON)) jansson   JSON (tokenizer.json, safetensors headers, manifests)"; \
	echo "  $$(yn $(HAVE_XXHASH)) xxhash    xxh3 checksums of shards and checkpoints"; \
	echo "optional:"; \
	echo "  $$(yn $(HAVE_MHD)) libmicrohttpd  keel serve: the HTTP server"; \
	echo "  $$(yn $(HAVE_MPI)) MPI            multi-process training (not yet used)"; \
	echo "  $$(yn $(HAVE_OPENCL)) OpenCL         OpenCL backend (not yet used)"; \
	echo "  $$(yn $(HAVE_CUDA)) CUDA (nvcc)    CUDA backend (not yet used)"; \
	echo "  $$(yn $(HAVE_ZSTD)) zstd           compressed shards (not yet used)"; \
	echo "  $$(yn $(HAVE_OPENBLAS)) OpenBLAS       GEMM peer in benchmarks (not yet used)"; \
	echo "  $$(yn $(HAVE_FUZZER)) libFuzzer      fuzz targets (clang)"

$(BUILD)/%.o: %.c
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -c $< -o $@

# the cluster presets are assembled into the binary (.incbin)
$(BUILD)/src/plan/cluster.o: $(wildcard configs/clusters/*.json)

$(BUILD)/libkeel.a: $(LIB_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BUILD)/keel: $(CLI_OBJ) $(BUILD)/libkeel.a
	$(CC) $(ALL_CFLAGS) -o $@ $(CLI_OBJ) $(BUILD)/libkeel.a $(LDLIBS)

$(BUILD)/tests/%: tests/unit/%.c tests/unit/check.h $(BUILD)/libkeel.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(BUILD)/libkeel.a $(LDLIBS)

unit: $(UNIT_BIN)

# ASan + UBSan build of the library, the binary and the unit tests, in build/asan.
asan:
	$(MAKE) BUILD=build/asan CFLAGS="-O1 -g -fsanitize=address,undefined -fno-omit-frame-pointer -fno-sanitize-recover=undefined" all unit

# The kernels written once on generic vectors (KERNEL) are copies the CPU picks at load time,
# out of KEEL_CPU's reach: these builds compile one copy, for AVX2 and for x86-64, with the unit
# tests of the kernels, which scripts/run_tests.sh runs under the same KEEL_CPU.
ISA_TESTS := test_backend test_ops test_model
isa:
	$(MAKE) BUILD=build/avx2 CFLAGS="-O2 -g -march=haswell -DKEEL_ONE_ISA" $(ISA_TESTS:%=build/avx2/tests/%)
	$(MAKE) BUILD=build/portable CFLAGS="-O2 -g -march=x86-64 -DKEEL_ONE_ISA" $(ISA_TESTS:%=build/portable/tests/%)

FUZZ_BIN := $(FUZZ:tests/fuzz/%.c=build/fuzz/%)
build/fuzz/%: tests/fuzz/%.c $(LIB_SRC) $(wildcard configs/clusters/*.json)
	@mkdir -p $(dir $@)
	clang $(BASE) -Wno-unknown-pragmas -O1 -g -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -Isrc -o $@ $< $(LIB_SRC) $(filter-out -fopenmp,$(LDLIBS))
fuzz: $(FUZZ_BIN)

setup:
	bash scripts/setup.sh

test: setup
	$(MAKE) all unit build/bench/tokenizer_bench
	$(MAKE) asan
	$(MAKE) isa
	@if [ "$(HAVE_FUZZER)" = 1 ]; then $(MAKE) fuzz; fi
	bash scripts/run_tests.sh

demo: setup
	$(MAKE) all
	bash scripts/demo.sh

build/bench/%: bench/%.c $(BUILD)/libkeel.a
	@mkdir -p $(dir $@)
	$(CC) $(ALL_CFLAGS) -Isrc -o $@ $< $(BUILD)/libkeel.a $(LDLIBS)

bench: all build/bench/tokenizer_bench
	bash bench/tokenizer_speed.sh
	build/keel bench

clean:
	rm -rf build

-include $(LIB_OBJ:.o=.d) $(CLI_OBJ:.o=.d)
