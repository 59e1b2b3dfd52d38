# lines.mk -- a GNU make fragment that runs one `lines merge` split into M
# parts, the parts as targets, so that `make -j` runs them side by side:
#
#   make -f contrib/lines.mk -j3 M=3 OUT=merged/ ARGS='-b base -m sum --lines ft1 ft2'
#
# or `include lines.mk` in a Makefile of your own and depend on $(LINES_DONE).
# ARGS are the arguments of `lines merge` without -o, --part, --stats and
# --stats-out (make splits them at spaces: no spaces in paths). The
# statistics and the stamps of the finished steps go to STATS (default
# OUT.stats; remove it to start another merge). After a failure, make again
# redoes what is missing, with the same bytes. ROUNDS, the number of
# statistics rounds, comes from `lines merge ... --part 0/M -n --json`
# unless given.

LINES ?= lines
M ?= 3
OUT ?= merged/
STATS ?= $(patsubst %/,%,$(OUT)).stats
ARGS ?=
ifndef ROUNDS
ROUNDS := $(shell $(LINES) merge $(ARGS) -o $(OUT) --part 0/$(M) -n --json | \
	sed -n 's/^ *"rounds": *\([0-9][0-9]*\).*/\1/p' | head -n 1)
endif
ifeq ($(ROUNDS),)
$(error cannot read the rounds from lines merge -n --json (see above): set ROUNDS)
endif

lines_parts := $(shell seq 0 $$(($(M) - 1)))
lines_rounds := $(shell seq 1 $(ROUNDS))
# --stats with round R's combined file, nothing for round 0
lines_with = $(if $(filter-out 0,$(1)),--stats $(STATS)/r$(1).json)
lines_prev = $(shell echo $$(($(1) - 1)))
LINES_DONE := $(STATS)/index.done

.PHONY: lines-all
lines-all: $(LINES_DONE)

# round R: every part's share of the statistics, then `lines stats`
define lines_round
$(STATS)/r$(1)-part-%.json: $(if $(filter-out 1,$(1)),$(STATS)/r$(call lines_prev,$(1)).json)
	@mkdir -p $(STATS)
	$(LINES) merge $(ARGS) -o $(OUT) --part $$*/$(M) $(call lines_with,$(call lines_prev,$(1))) --stats-out $$@
$(STATS)/r$(1).json: $(foreach k,$(lines_parts),$(STATS)/r$(1)-part-$(k).json)
	$(LINES) stats $$^ -o $$@
endef
$(foreach r,$(lines_rounds),$(eval $(call lines_round,$(r))))

# the parts that write shards, each with the last round's statistics
$(STATS)/part-%.done: $(if $(lines_rounds),$(STATS)/r$(ROUNDS).json)
	@mkdir -p $(STATS)
	$(LINES) merge $(ARGS) -o $(OUT) --part $*/$(M) $(call lines_with,$(ROUNDS))
	touch $@

# the assembly, once every part is written
$(LINES_DONE): $(foreach k,$(lines_parts),$(STATS)/part-$(k).done)
	$(LINES) index $(OUT)
	touch $@
