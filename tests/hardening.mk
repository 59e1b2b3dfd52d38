## tests/hardening.mk -- the malformed-input corpus and the fuzz targets
## (included from Makefile.am).

## ---- the corpus ----------------------------------------------------------------
## gen-corpus writes some 270 malformed and edge-case files with their
## verdicts; t-corpus.sh runs lines over them. It is a noinst program, not a
## check program: TESTS holds $(check_PROGRAMS), and gen-corpus is no test.
noinst_PROGRAMS += tests/gen-corpus
tests_gen_corpus_SOURCES = tests/gen-corpus.c tests/gguf-write.h

TESTS += tests/t-corpus.sh
EXTRA_DIST += tests/t-corpus.sh tests/fuzz-header.c tests/fuzz-index.c tests/fuzz-gguf.c

## ---- fuzzing -------------------------------------------------------------------
## `make fuzz` builds tests/fuzz-header (and fuzz-index, fuzz-gguf) with clang and libFuzzer, ASan and
## UBSan, seeds it with the corpus and runs it for FUZZ_SECONDS; it fails
## when the fuzzer finds a crash, a leak, a timeout or a round trip that does
## not hold (the input is left in fuzz/artifacts/). The inputs it finds stay
## in fuzz/corpus/ for the next run. `make fuzz-smoke` is the 20-second run
## for CI. Neither is part of `all` or `check`.
##
## The reader is compiled from its sources with clang, instrumented, rather
## than taken from the gcc-built liblines.a: st_format.c and util.c (the
## error record and the dtype table) are all it needs.
FUZZ_SECONDS = 60
FUZZ_CC = clang
FUZZ_CFLAGS = -fsanitize=fuzzer,address,undefined -fno-sanitize-recover=all -g -O1
FUZZ_SRCS = $(top_srcdir)/tests/fuzz-header.c $(top_srcdir)/src/formats/st_format.c \
	$(top_srcdir)/src/core/util.c
FUZZ_IDX_SRCS = $(top_srcdir)/tests/fuzz-index.c $(top_srcdir)/src/formats/ckpt.c \
	$(top_srcdir)/src/formats/fmt_safetensors.c $(top_srcdir)/src/formats/fmt_gguf.c \
	$(top_srcdir)/src/core/layers.c $(top_srcdir)/src/formats/st_format.c $(top_srcdir)/src/core/util.c \
	$(top_srcdir)/src/formats/stream.c $(top_srcdir)/src/formats/hub.c
FUZZ_GGUF_SRCS = $(top_srcdir)/tests/fuzz-gguf.c $(top_srcdir)/src/formats/fmt_gguf.c \
	$(top_srcdir)/src/core/util.c
FUZZ_INCS = $(top_srcdir)/src/formats/fmt_gguf.h $(top_srcdir)/src/core/layers.h \
	$(top_srcdir)/src/formats/st_format.h $(top_srcdir)/src/core/internal.h \
	$(top_srcdir)/include/lines.h $(top_srcdir)/src/formats/ckpt.h $(top_srcdir)/src/formats/stream.h \
	$(top_srcdir)/src/formats/hub.h
FUZZ_DIR = fuzz
FUZZ_FLAGS = -max_len=1048576 -timeout=10 -max_total_time=$(FUZZ_SECONDS) -print_final_stats=1 \
	-artifact_prefix=$(FUZZ_DIR)/artifacts/

tests/fuzz-header$(EXEEXT): $(FUZZ_SRCS) $(FUZZ_INCS) config.h
	@$(MKDIR_P) tests
	@command -v $(FUZZ_CC) >/dev/null || { \
		echo "make fuzz needs clang with libFuzzer (FUZZ_CC=$(FUZZ_CC))" >&2; exit 1; }
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(AM_CPPFLAGS) -I$(top_builddir) \
		$(DEP_CFLAGS) -o $@ $(FUZZ_SRCS) $(DEP_LIBS)

tests/fuzz-index$(EXEEXT): $(FUZZ_IDX_SRCS) $(FUZZ_INCS) config.h
	@$(MKDIR_P) tests
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(AM_CPPFLAGS) -I$(top_builddir) \
		$(DEP_CFLAGS) -o $@ $(FUZZ_IDX_SRCS) $(DEP_LIBS) -lm

tests/fuzz-gguf$(EXEEXT): $(FUZZ_GGUF_SRCS) $(FUZZ_INCS) config.h
	@$(MKDIR_P) tests
	$(FUZZ_CC) $(FUZZ_CFLAGS) $(AM_CPPFLAGS) -I$(top_builddir) \
		$(DEP_CFLAGS) -o $@ $(FUZZ_GGUF_SRCS) $(DEP_LIBS) -lm

## seeds for the index reader: a good index, and a few that lie
fuzz-index-seeds:
	$(MKDIR_P) $(FUZZ_DIR)/index-seeds
	printf '{"metadata": {"total_size": 8}, "weight_map": {"a": "model-00001-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}' >$(FUZZ_DIR)/index-seeds/good
	printf '{"weight_map": {"a": "model-00002-of-00002.safetensors", "b": "model-00002-of-00002.safetensors"}}' >$(FUZZ_DIR)/index-seeds/wrong-shard
	printf '{"weight_map": {"a": "../x", "b": "/etc/passwd"}}' >$(FUZZ_DIR)/index-seeds/escape
	printf '{"metadata": {"total_size": 9}, "weight_map": {"a": "model-00001-of-00002.safetensors"}}' >$(FUZZ_DIR)/index-seeds/size

fuzz: tests/fuzz-header$(EXEEXT) tests/fuzz-index$(EXEEXT) tests/fuzz-gguf$(EXEEXT) \
		tests/gen-corpus$(EXEEXT) fuzz-index-seeds
	rm -rf $(FUZZ_DIR)/seeds $(FUZZ_DIR)/gguf-seeds $(FUZZ_DIR)/artifacts
	$(MKDIR_P) $(FUZZ_DIR)/corpus $(FUZZ_DIR)/index-corpus $(FUZZ_DIR)/gguf-corpus \
		$(FUZZ_DIR)/gguf-seeds $(FUZZ_DIR)/artifacts
	./tests/gen-corpus --no-big $(FUZZ_DIR)/seeds
	mv $(FUZZ_DIR)/seeds/*.gguf $(FUZZ_DIR)/gguf-seeds/
	./tests/fuzz-header $(FUZZ_FLAGS) $(FUZZ_DIR)/corpus $(FUZZ_DIR)/seeds
	./tests/fuzz-index $(FUZZ_FLAGS) $(FUZZ_DIR)/index-corpus $(FUZZ_DIR)/index-seeds
	./tests/fuzz-gguf $(FUZZ_FLAGS) $(FUZZ_DIR)/gguf-corpus $(FUZZ_DIR)/gguf-seeds
	@if ls $(FUZZ_DIR)/artifacts | grep -q .; then \
		echo "fuzz: the fuzzer left inputs in $(FUZZ_DIR)/artifacts" >&2; exit 1; fi

fuzz-smoke:
	$(MAKE) $(AM_MAKEFLAGS) fuzz FUZZ_SECONDS=20

clean-fuzz:
	rm -rf $(FUZZ_DIR) tests/fuzz-header$(EXEEXT) tests/fuzz-index$(EXEEXT) tests/fuzz-gguf$(EXEEXT)

clean-local: clean-fuzz

.PHONY: fuzz fuzz-smoke fuzz-index-seeds clean-fuzz
