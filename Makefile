# pare: `make demo` and `make test` do everything on a fresh Debian 12 machine.
BUILD ?= build
JOBS ?= $(shell nproc)
DEMO_DIR ?= runs/demo
space := $(subst ,, )

.PHONY: all deps build test test-asan test-tsan test-portable test-faults test-fuzz fuzz san-build fuzz-seeds demo bench clean

all: build

deps:
	@bash scripts/install-deps.sh

$(BUILD)/build.ninja: CMakeLists.txt
	cmake -S . -B $(BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release

build: deps $(BUILD)/build.ninja
	cmake --build $(BUILD) -j $(JOBS)

test: build
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	$(MAKE) --no-print-directory test-asan
	$(MAKE) --no-print-directory test-fuzz
	$(MAKE) --no-print-directory test-tsan
	$(MAKE) --no-print-directory test-portable

# The sanitizer build (docs/reliability.md, "Sanitizers"): clang, every room
# and test under AddressSanitizer and UndefinedBehaviorSanitizer (any finding
# aborts its test), instrumented for libFuzzer's coverage too, so the same
# tree holds the fuzz targets of fuzz/. Built without MPI (Open MPI's own
# allocations would read as leaks; build/ tests the communicator).
SAN_BUILD ?= build-san
SAN_ENV = PARE_SPARSE_CROSSOVER=0.3 ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 \
  UBSAN_OPTIONS=print_stacktrace=1
san-build: deps
	cmake -S . -B $(SAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DCMAKE_C_COMPILER=clang \
	  -DCMAKE_CXX_COMPILER=clang++ -DPARE_SANITIZE=address,undefined -DPARE_FUZZ=ON \
	  -DPARE_BUILD_BENCH=OFF -DPARE_WITH_MPI=OFF >/dev/null
	cmake --build $(SAN_BUILD) -j $(JOBS)
# The whole test suite under ASan and UBSan.
test-asan: san-build
	cd $(SAN_BUILD) && $(SAN_ENV) ctest --output-on-failure -j $(JOBS)

# libFuzzer targets, one per reader of outside bytes (fuzz/, docs/reliability.md
# "Fuzzing"), in the sanitizer build. `make fuzz` runs each for FUZZ_SECONDS
# and prints its executions and findings (crashing inputs go to
# fuzz/findings/<target>/); `make test` runs each for FUZZ_TEST_SECONDS.
# FUZZ_TARGETS picks some (e.g. FUZZ_TARGETS="idx npy").
FUZZ_SECONDS ?= 120
FUZZ_TEST_SECONDS ?= 10
FUZZ_TARGETS ?=
fuzz: san-build
	bash fuzz/run.sh $(SAN_BUILD) $(FUZZ_SECONDS) $(FUZZ_TARGETS)
test-fuzz: san-build
	bash fuzz/run.sh $(SAN_BUILD) $(FUZZ_TEST_SECONDS) $(FUZZ_TARGETS)
# Rewrites the seed corpora of fuzz/corpus/ with pare's own writers.
fuzz-seeds: san-build
	cmake --build $(SAN_BUILD) --target fuzz_make_seeds
	$(SAN_BUILD)/fuzz/fuzz_make_seeds fuzz/corpus

# ThreadSanitizer over the rooms that run threads: the thread pool (base),
# the kernels that split work over it, the tensor and autograd ops that call
# them, the layers' sparse dispatch (nn), the optimizers and the training
# loop's sharded steps (train).
TSAN_BUILD ?= build-tsan
TSAN_ROOMS = base kernels tensor autograd nn optim train
test-tsan: deps
	cmake -S . -B $(TSAN_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DPARE_SANITIZE=thread \
	  -DPARE_BUILD_BENCH=OFF -DPARE_WITH_MPI=OFF >/dev/null
	cmake --build $(TSAN_BUILD) -j $(JOBS) $(addprefix --target test_,$(TSAN_ROOMS))
	cd $(TSAN_BUILD) && TSAN_OPTIONS=halt_on_error=1:second_deadlock_stack=1 \
	  ctest --output-on-failure -j $(JOBS) -L '^($(subst $(space),|,$(TSAN_ROOMS)))$$'

# The kernels' other vector paths (kernels/fast/simd.h): build/ compiles for
# this machine (-march=native: AVX-512 here), so the AVX2 paths and their
# tails, what most machines without AVX-512 run, are built and tested here
# with their fast-against-reference tests (kernels, tensor). The scalar
# fallback: make test-portable PORTABLE_FLAGS= PORTABLE_BUILD=build-scalar.
PORTABLE_BUILD ?= build-avx2
PORTABLE_FLAGS ?= -mavx2 -mfma
PORTABLE_ROOMS = kernels tensor
test-portable: deps
	cmake -S . -B $(PORTABLE_BUILD) -G Ninja -DCMAKE_BUILD_TYPE=Release -DPARE_NATIVE=OFF \
	  -DCMAKE_CXX_FLAGS="$(PORTABLE_FLAGS)" -DPARE_BUILD_BENCH=OFF -DPARE_WITH_MPI=OFF >/dev/null
	cmake --build $(PORTABLE_BUILD) -j $(JOBS) $(addprefix --target test_,$(PORTABLE_ROOMS))
	cd $(PORTABLE_BUILD) && ctest --output-on-failure -j $(JOBS) \
	  -L '^($(subst $(space),|,$(PORTABLE_ROOMS)))$$'

# Fault injection (docs/reliability.md): pare killed with SIGKILL at 120
# random points over four phases (training, inside checkpoint writes, a
# ticket, a life sweep), each run resumed and compared bit for bit with an
# uninterrupted one; then a full disk (file size limit, and a small tmpfs
# where mounting one works) and damaged checkpoints. `make test` runs the
# same with 20 points (tests/faults). The counts go to $(BUILD)/faults.json.
FAULT_POINTS ?= 120
test-faults: build
	python3 tests/faults/kill_points.py --pare $(BUILD)/pare --points $(FAULT_POINTS) --seed 1 \
	  --json $(BUILD)/faults.json

# Trains LeNet-300-100 on Fashion-MNIST (Debian's dataset-fashion-mnist), then
# prunes 90 % of its weights by magnitude and fine-tunes the rest (the pruned
# layers train on sparse kernels); prints the test accuracy of both, and
# evaluates the pruned model with dense kernels and with sparse ones (same
# accuracy; the seconds and each layer's kernels are printed); then writes it
# as a .pare file with 5-bit shared weights (docs/compression.md) and
# evaluates the file; then as int8 with calibrated grids, scored by the
# integer-only program a microcontroller runs, and exported as C99 with its
# flash, RAM and instructions per inference on a Cortex-M0+ (docs/mcu.md);
# trains the pruned net one more epoch over 2 MPI ranks (docs/distributed.md);
# prints what the two training runs cost (docs/cost.md) and writes the report
# of the run (docs/report.md).
# Ends with report.html of these runs and files (docs/report.md), the two
# .pare files' accuracies saved beside them for it, and prints its path.
demo: build
	$(BUILD)/pare train --model lenet300 --data fashion-mnist --epochs 10 --batch 60 \
	  --optimizer adam --lr 1.2e-3 --schedule cosine --normalize --seed 0 \
	  --out $(DEMO_DIR)/dense --overwrite
	$(BUILD)/pare prune --from $(DEMO_DIR)/dense/model.bin --data fashion-mnist \
	  --criterion magnitude --sparsity 0.9 --train --epochs 3 --batch 60 \
	  --optimizer adam --lr 6e-4 --schedule cosine --out $(DEMO_DIR)/pruned90 --overwrite
	$(BUILD)/pare eval $(DEMO_DIR)/pruned90/model.bin --data fashion-mnist --sparse off
	$(BUILD)/pare eval $(DEMO_DIR)/pruned90/model.bin --data fashion-mnist --sparse auto
	@if command -v mpirun >/dev/null; then \
	  echo "one more epoch of the pruned net, data-parallel over 2 MPI ranks (docs/distributed.md):"; \
	  OMPI_ALLOW_RUN_AS_ROOT=1 OMPI_ALLOW_RUN_AS_ROOT_CONFIRM=1 mpirun --oversubscribe --bind-to none -np 2 \
	    $(BUILD)/pare train --from $(DEMO_DIR)/pruned90/model.bin --data fashion-mnist --epochs 1 \
	    --batch 60 --optimizer adam --lr 3e-4 --shards 2 --out $(DEMO_DIR)/pruned90_2ranks --overwrite --quiet; \
	fi
	$(BUILD)/pare compress $(DEMO_DIR)/pruned90/model.bin -o $(DEMO_DIR)/pruned90.pare --share-bits 5
	$(BUILD)/pare eval $(DEMO_DIR)/pruned90.pare --data fashion-mnist
	$(BUILD)/pare compress $(DEMO_DIR)/pruned90/model.bin -o $(DEMO_DIR)/pruned90_int8.pare --int8 \
	  --calibrate --data fashion-mnist
	$(BUILD)/pare eval $(DEMO_DIR)/pruned90_int8.pare --data fashion-mnist --program
	$(BUILD)/pare export $(DEMO_DIR)/pruned90_int8.pare --target c -o $(DEMO_DIR)/c --device-cost
	@echo "a variant tuned to classes 3 and 4 with LoRA, kept as a delta of its rank-1 factors (docs/compression.md):"
	$(BUILD)/pare train --from $(DEMO_DIR)/pruned90/model.bin --data fashion-mnist --train-classes 3,4 \
	  --epochs 1 --batch 60 --optimizer adam --lr 1e-3 --lora-rank 1 --out $(DEMO_DIR)/variant34 --overwrite --quiet
	$(BUILD)/pare delta $(DEMO_DIR)/pruned90/model.bin $(DEMO_DIR)/variant34/model.bin -o $(DEMO_DIR)/variant34.pdelta
	$(BUILD)/pare apply $(DEMO_DIR)/pruned90/model.bin $(DEMO_DIR)/variant34.pdelta -o $(DEMO_DIR)/variant34_rebuilt.bin
	$(BUILD)/pare eval $(DEMO_DIR)/variant34_rebuilt.bin --data fashion-mnist --test-classes 3,4
	$(BUILD)/pare cost $(DEMO_DIR)/dense $(DEMO_DIR)/pruned90
	$(BUILD)/pare eval $(DEMO_DIR)/pruned90.pare --data fashion-mnist --json >$(DEMO_DIR)/pruned90.pare.eval.json
	$(BUILD)/pare eval $(DEMO_DIR)/pruned90_int8.pare --data fashion-mnist --program --json \
	  >$(DEMO_DIR)/pruned90_int8.pare.eval.json
	$(BUILD)/pare report $(DEMO_DIR)/dense $(DEMO_DIR)/pruned90 $(DEMO_DIR)/pruned90.pare $(DEMO_DIR)/pruned90_int8.pare \
	  -o $(DEMO_DIR)/report.html --title "pare demo: LeNet-300-100 on Fashion-MNIST" --quiet
	@echo "report: $(abspath $(DEMO_DIR)/report.html)"

bench: build
	bash bench/run_train.sh

clean:
	rm -rf $(BUILD) $(SAN_BUILD) $(TSAN_BUILD)
