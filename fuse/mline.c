#define _GNU_SOURCE
#include "mline.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>

#include <cjson/cJSON.h>

#include "path.h"
#include "proto.h"

/* A JSON number that is an integer in [0, max] into *out. A double holds
 * every integer up to 2^53 exactly; the range check comes before any
 * conversion (converting an out-of-range double is undefined). */
static int get_uint(const cJSON *j, double max, uint64_t *out)
{
	if (!cJSON_IsNumber(j))
		return -EPROTO;
	double d = j->valuedouble;
	if (!(d >= 0 && d <= max) || d != (double)(uint64_t)d)
		return -EPROTO;
	*out = (uint64_t)d;
	return 0;
}

int mline_parse(const char *line, size_t len, struct mline *out)
{
	int r = -EPROTO;
	uint64_t v;

	memset(out, 0, sizeof(*out));
	if (len == 0)
		return 0;
	if (proto_json_has_nul(line, len))
		return -EPROTO; /* cJSON would cut the path at the NUL */
	cJSON *j = cJSON_ParseWithLength(line, len);
	if (!cJSON_IsObject(j))
		goto out;
	const cJSON *p = cJSON_GetObjectItemCaseSensitive(j, "p");
	const cJSON *t = cJSON_GetObjectItemCaseSensitive(j, "t");
	const cJSON *mo = cJSON_GetObjectItemCaseSensitive(j, "m");
	const cJSON *s = cJSON_GetObjectItemCaseSensitive(j, "s");
	const cJSON *mt = cJSON_GetObjectItemCaseSensitive(j, "mt");
	const cJSON *l = cJSON_GetObjectItemCaseSensitive(j, "l");

	if (!cJSON_IsString(p) || !cJSON_IsString(t) || strlen(t->valuestring) != 1 ||
	    path_check(p->valuestring, strlen(p->valuestring), 1) < 0)
		goto out;
	out->type = t->valuestring[0];
	if (mo) {
		if (get_uint(mo, 07777, &v) < 0)
			goto out;
		out->mode = (uint32_t)v;
	}
	if (s) {
		if (get_uint(s, 9007199254740992.0, &v) < 0)
			goto out;
		out->size = v;
	}
	if (mt && proto_time_from_json(mt, &out->mtime) < 0)
		goto out;
	if (l && !cJSON_IsString(l))
		goto out;
	r = -ENOMEM;
	if (!(out->path = strdup(p->valuestring)) ||
	    (l && !(out->target = strdup(l->valuestring))))
		goto out;
	r = 1;
out:
	cJSON_Delete(j);
	if (r < 0)
		mline_release(out);
	return r;
}

void mline_release(struct mline *l)
{
	if (!l)
		return;
	free(l->path);
	free(l->target);
	memset(l, 0, sizeof(*l));
}
