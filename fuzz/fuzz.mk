# fuzz/fuzz.mk: libFuzzer targets for every parser of network input
# (included by the Makefile).
#
#   make fuzz                 build every fuzz/fuzz_*.c and run each for
#                             FUZZ_SECONDS (default 60) on its seed corpus
#   make fuzz FUZZ_TARGETS=fuzz_frame FUZZ_SECONDS=600
#   make fuzz-build           build only (build-fuzz/fuzz_*)
#   make fuzz-check           run each target once over its seeds (seconds;
#                             a regression check, no fuzzing)
#
# Seeds live in fuzz/corpus/<target>/ (committed, kept small); what a run
# finds new goes to build-fuzz/corpus/<target>/, crashes to
# build-fuzz/artifacts/ (reproduce: build-fuzz/<target> FILE). Needs clang
# with libFuzzer (Debian: clang).

FUZZ_CC      ?= clang
FUZZ_SECONDS ?= 60
FUZZ_BUILD   := build-fuzz
FUZZ_ALL     := $(patsubst fuzz/%.c,%,$(wildcard fuzz/fuzz_*.c))
FUZZ_TARGETS ?= $(FUZZ_ALL)
FUZZ_SAN     := -fsanitize=address,undefined -fno-sanitize-recover=undefined
FUZZ_CFLAGS  := -std=gnu11 -g -O1 -fno-omit-frame-pointer -D_FILE_OFFSET_BITS=64 -pthread \
	-Icommon -Iserver -Ifuse $(call pc_cflags,libcjson libsodium libzstd)
FUZZ_LIBS    := $(call pc_libs,libcjson libsodium libzstd)

# What each target links besides common/ (server and client modules that
# are pure enough to run outside their daemons).
FUZZ_EXTRA_fuzz_route := server/route.c server/auth.c
FUZZ_EXTRA_fuzz_mline := fuse/mline.c

FUZZ_COMMON_OBJ := $(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$(wildcard common/*.c))

$(FUZZ_BUILD)/obj/%.o: %.c
	@mkdir -p $(dir $@)
	@echo "  FUZZCC  $<"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer-no-link -MMD -MP -c $< -o $@

$(FUZZ_BUILD)/libcommon.a: $(FUZZ_COMMON_OBJ)
	@rm -f $@ && ar rcs $@ $^

.SECONDEXPANSION:
$(FUZZ_BUILD)/fuzz_%: fuzz/fuzz_%.c $$(patsubst %.c,$(FUZZ_BUILD)/obj/%.o,$$(FUZZ_EXTRA_fuzz_$$*)) $(FUZZ_BUILD)/libcommon.a
	@echo "  FUZZLD  $@"
	@$(FUZZ_CC) $(FUZZ_CFLAGS) $(FUZZ_SAN) -fsanitize=fuzzer -o $@ $^ $(FUZZ_LIBS)

fuzz-build: $(FUZZ_TARGETS:%=$(FUZZ_BUILD)/%)

# Each target in turn, FUZZ_SECONDS each; stops at the first crash.
fuzz: fuzz-build
	@mkdir -p $(FUZZ_BUILD)/artifacts
	@for t in $(FUZZ_TARGETS); do \
		mkdir -p $(FUZZ_BUILD)/corpus/$$t; \
		echo "fuzz: $$t for $(FUZZ_SECONDS)s"; \
		$(FUZZ_BUILD)/$$t -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
			-artifact_prefix=$(FUZZ_BUILD)/artifacts/$$t- \
			$(FUZZ_BUILD)/corpus/$$t fuzz/corpus/$$t 2>$(FUZZ_BUILD)/$$t.log || \
			{ tail -n 60 $(FUZZ_BUILD)/$$t.log; echo "fuzz: $$t FAILED (log: $(FUZZ_BUILD)/$$t.log)"; exit 1; }; \
		grep -E '^stat::number_of_executed_units|^#[0-9]+.*DONE' $(FUZZ_BUILD)/$$t.log | tail -n 2; \
	done

fuzz-check: fuzz-build
	@for t in $(FUZZ_TARGETS); do \
		$(FUZZ_BUILD)/$$t -runs=0 fuzz/corpus/$$t >$(FUZZ_BUILD)/$$t.check.log 2>&1 || \
			{ tail -n 40 $(FUZZ_BUILD)/$$t.check.log; echo "fuzz-check: $$t FAILED"; exit 1; }; \
		echo "fuzz-check: $$t ok ($$(ls fuzz/corpus/$$t | wc -l) seeds)"; \
	done

fuzz-clean:
	rm -rf $(FUZZ_BUILD)

.PHONY: fuzz fuzz-build fuzz-check fuzz-clean

-include $(shell find $(FUZZ_BUILD)/obj -name '*.d' 2>/dev/null)
