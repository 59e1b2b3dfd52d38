/*
 * kv_both.h -- a loop body written once (kv_width.h), included at both
 * widths: a file defines KV_BODY as the name of the body's header, in
 * quotes, then includes this file, which defines the body's functions
 * f_8 and f_4 and undefines KV_BODY. KV_CALL(wide, f, ...) (kv_width.h)
 * calls the one of struct kern's width. KV_BODY is searched for from
 * this directory, then the include path (src/methods is on it).
 */
#ifndef KV_BODY
#error "kv_both.h: define KV_BODY, the body's header, first"
#endif
#define KVW 8
#include "kv_width.h"
#include KV_BODY
#undef KVW
#define KVW 4
#include "kv_width.h"
#include KV_BODY
#undef KVW
#undef KV_BODY
