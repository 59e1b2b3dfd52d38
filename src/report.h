/*
 * report.h -- the JSON values the manifest (manifest.c) and the plan's
 * report (report.c, lines_plan_json) share, so both write a number or a
 * TIES threshold the same way.
 */
#ifndef LINES_REPORT_H
#define LINES_REPORT_H

#include <stdint.h>

#include <jansson.h>

/* A number; JSON has no infinity or NaN, so those are the strings "inf",
 * "-inf" and "nan". NULL when memory runs out. */
json_t *report_num(double v);
/* n TIES thresholds, float32 bit patterns, as the magnitudes they are (a
 * task whose largest entries are infinite or NaN has such a threshold). */
json_t *report_thresholds(const uint32_t *thr, unsigned n);

#endif
