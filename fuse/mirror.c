#define _GNU_SOURCE
#include "mirror.h"

#include <stdarg.h>
#include <stdio.h>
#include <string.h>

#include "log.h"

void mirror_error(struct mirror *m, const char *path, const char *fmt, ...)
{
	char msg[400];
	va_list ap;
	va_start(ap, fmt);
	vsnprintf(msg, sizeof(msg), fmt, ap);
	va_end(ap);
	log_error("%s: %s", path[0] ? path : "/", msg);
	pthread_mutex_lock(&m->stats_lock);
	snprintf(m->stats.last_error, sizeof(m->stats.last_error), "%s: %s",
		 path[0] ? path : "/", msg);
	m->stats.last_error_at = time(NULL);
	pthread_mutex_unlock(&m->stats_lock);
}
