# Top-level entry points. Each installs the Debian packages it needs first.
#   make run      build, then generate text from the embedded default model (PROMPT="..." to choose)
#   make          build the library and the CLI (build/baichuan)
#   make test     build release and sanitizer (ASan+UBSan) trees, run every test in both, then
#                 build the libFuzzer targets and run each for a few seconds (a smoke run);
#                 packages install during the builds and the fuzz build runs during the tests
#                 (scripts/test.sh)
#   make asan     only the sanitizer build
#   make fuzz     build the libFuzzer targets with clang (build-fuzz/); run them with scripts/fuzz.sh
#   make bench-tokenizer  tokenizer MB/s beside spm_encode
#   make clean

JOBS ?= $(shell nproc 2>/dev/null || echo 2)
CMAKE_FLAGS ?=

PROMPT ?= 床前明月光，
N ?= 96

.PHONY: all run build asan fuzz deps-fuzz test test-release test-asan test-fuzz deps-build deps-test \
	bench-tokenizer clean

all: build

deps-build:
	@scripts/deps.sh build

deps-test:
	@scripts/deps.sh test

build: deps-build
	@cmake -S . -B build -DCMAKE_BUILD_TYPE=Release -DBC_WERROR=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build -j $(JOBS)

run: build
	build/baichuan run -p "$(PROMPT)" -n $(N)

asan: deps-build
	@cmake -S . -B build-asan -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBC_WERROR=ON -DBC_SANITIZE=ON \
		-DBC_TEST_CACHE=$(CURDIR)/build/test-cache $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-asan -j $(JOBS)

deps-fuzz:
	@scripts/deps.sh fuzz

# libFuzzer + ASan + UBSan (no -Werror: clang warns where gcc does not).
fuzz: deps-fuzz
	@cmake -S . -B build-fuzz -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DBC_FUZZ=ON $(CMAKE_FLAGS) >/dev/null
	@cmake --build build-fuzz -j $(JOBS) --target fuzzers

test-release: deps-test build
	cd build && ctest --output-on-failure -j $(JOBS)

test-asan: deps-test asan
	cd build-asan && ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1 \
		ctest --output-on-failure -j $(JOBS)

# Each fuzz target for FUZZ_SECONDS from its seeds; a finding fails the run.
FUZZ_SECONDS ?= 10
test-fuzz: deps-test fuzz
	scripts/fuzz.sh $(FUZZ_SECONDS)

# test-release, test-asan and test-fuzz, with the waits overlapped: the
# test packages install while the trees build, the fuzz targets build while
# the tests run (scripts/test.sh).
test:
	@JOBS="$(JOBS)" FUZZ_SECONDS="$(FUZZ_SECONDS)" CMAKE_FLAGS="$(CMAKE_FLAGS)" scripts/test.sh

# Tokenizer speed beside SentencePiece's spm_encode (prints figures; not a test).
bench-tokenizer: deps-test build
	/usr/bin/python3 bench/bench_tokenizer.py --build build

clean:
	rm -rf build build-asan build-fuzz
