# The README's commands. The build itself is CMake (CMakeLists.txt); this file
# only installs what is missing, configures, and runs.

BUILD      ?= build
BUILD_SAN  ?= build-san
BUILD_FUZZ ?= build-fuzz
# Seconds each fuzz target runs: make fuzz's long form; make check runs 10.
FUZZ_SECONDS ?= 300
JOBS       ?= $(shell nproc)
SUDO       := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

# Debian packages the build needs (MuPDF's -dev package does not pull in
# what it links against, hence the list after it).
BUILD_PKGS := build-essential cmake pkg-config libtesseract-dev libleptonica-dev \
              libmupdf-dev libmujs-dev libgumbo-dev libopenjp2-7-dev libjbig2dec0-dev \
              libharfbuzz-dev libfreetype-dev libjpeg-dev zlib1g-dev libjansson-dev \
              libsqlite3-dev libpq-dev libmicrohttpd-dev libcurl4-openssl-dev libyaml-dev libsystemd-dev libseccomp-dev
# What running and testing need beyond the build.
RUN_PKGS   := tesseract-ocr tesseract-ocr-eng tesseract-ocr-osd
TEST_PKGS  := postgresql poppler-utils libxml2-utils qpdf libtiff-tools tesseract-ocr-deu curl python3 sqlite3 chromium prometheus \
              clang libclang-rt-14-dev
BENCH_PKGS := ocrmypdf python3-rq redis-server mupdf-tools img2pdf bc

.PHONY: all build deps deps-test run check test test-san bench fuzz fuzz-build soak clean format

all: build

build:
	@cmake -S . -B $(BUILD) -DCMAKE_BUILD_TYPE=RelWithDebInfo >/dev/null
	@cmake --build $(BUILD) -j $(JOBS)

# Installs only the packages that are missing, so repeated runs are quick.
define install_missing
	@missing=$$(for p in $(1); do dpkg-query -W -f='$${Status}\n' $$p 2>/dev/null | grep -q 'ok installed' || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  echo "installing: $$missing"; \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get update -q && \
	  $(SUDO) env DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends $$missing; \
	fi
endef

deps:
	$(call install_missing,$(BUILD_PKGS) $(RUN_PKGS))

deps-test: deps
	$(call install_missing,$(TEST_PKGS))

# Builds and serves on 127.0.0.1:8080 with the embedded store in ./var, until Ctrl-C.
run: deps build
	@mkdir -p var
	@echo "ocrpool: serving on http://127.0.0.1:8080 (data in ./var). In another terminal, try:"
	@echo "  curl --data-binary @tests/data/phototest.tif http://127.0.0.1:8080/v1/ocr"
	@echo "  curl -X POST --data-binary @tests/data/linn.pdf 'http://127.0.0.1:8080/v1/tasks?format=txt,pdf'"
	./$(BUILD)/ocrpool serve --listen 127.0.0.1:8080 --data-dir var

# Every test runs twice: on the release build (what users run, and the only
# honest memory figures) and under AddressSanitizer + UBSan (leaks, overflows,
# undefined behaviour, in the supervisor and in every worker).
check: deps-test build
	@cmake -S . -B $(BUILD_SAN) -DCMAKE_BUILD_TYPE=Debug -DOCRPOOL_SANITIZE=ON >/dev/null
	@cmake --build $(BUILD_SAN) -j $(JOBS)
	cd $(BUILD) && ctest --output-on-failure -j $(JOBS)
	cd $(BUILD_SAN) && ASAN_OPTIONS=detect_leaks=1:abort_on_error=0 \
	  UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
	  ctest --output-on-failure -j $(JOBS)
	@$(MAKE) --no-print-directory fuzz-build
	bash tests/fuzz/run.sh $(BUILD_FUZZ) 10

# libFuzzer on our own parsers (tests/fuzz): each target FUZZ_SECONDS, after
# replaying tests/fuzz/regressions; the corpora grow in $(BUILD_FUZZ)/corpus.
fuzz: deps-test fuzz-build
	bash tests/fuzz/run.sh $(BUILD_FUZZ) $(FUZZ_SECONDS)

# The chaos test (tests/test_chaos.sh) at full size: 100 workers hit from
# outside and 10 server kills under load; make check runs 15 and 2.
# The long forms of issue 14: the chaos test at full size, then 10,000 pages
# through one server (bench/soak.sh, which writes docs/benchmarks.md's Soak).
soak: deps-test build
	$(call install_missing,$(BENCH_PKGS))
	CHAOS_ROUNDS=100 CHAOS_SERVER_KILLS=10 bash tests/test_chaos.sh $(BUILD)/ocrpool
	bash bench/soak.sh $(BUILD)

fuzz-build:
	@cmake -S . -B $(BUILD_FUZZ) -DCMAKE_C_COMPILER=clang -DCMAKE_BUILD_TYPE=RelWithDebInfo -DOCRPOOL_FUZZ=ON >/dev/null
	@cmake --build $(BUILD_FUZZ) -j $(JOBS)

bench: deps-test build
	$(call install_missing,$(BENCH_PKGS))
	@cmake --build $(BUILD) --target bench_api_loop -j $(JOBS)
	bash bench/run.sh $(BUILD)

format:
	clang-format -i $$(git ls-files 'src/*.c' 'src/*.h' 'tests/*.c' 'tests/*.h' 'bench/*.c')

clean:
	rm -rf $(BUILD) $(BUILD_SAN) $(BUILD_FUZZ)
