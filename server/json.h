/*
 * json: writing JSON text straight into a struct buf, for mirrord's replies
 * and manifest lines (which can hold millions of numbers: building a cJSON
 * tree for them would cost far more memory than the text).
 *
 * Pure functions, thread-safe. Each may reallocate the buf and returns 0 or
 * a negative errno from buf_append (-EMSGSIZE over the cap, -ENOMEM).
 */
#ifndef MIRRORD_JSON_H
#define MIRRORD_JSON_H

#include <stddef.h>

#include "buf.h"

/* Append s[0..n) as the inside of a JSON string (no quotes): '"', '\\' and
 * control bytes are escaped, every other byte (including bytes that are not
 * UTF-8: file names are bytes) is copied verbatim, as cJSON reads it. */
__attribute__((warn_unused_result))
int json_append_str(struct buf *b, const char *s, size_t n);

/* Append "s" (quoted). */
__attribute__((warn_unused_result))
int json_append_qstr(struct buf *b, const char *s);

#endif
