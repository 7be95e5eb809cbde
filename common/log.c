#define _GNU_SOURCE
#include "log.h"

#include <errno.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

/* Frozen after log_init(), which runs before any thread starts. */
static const char *log_ident = "mirror";
static int log_syslog;
static enum log_level log_max = LOG_LVL_INFO;

void log_thread_name(const char *name)
{
#ifdef __linux__
	(void)pthread_setname_np(pthread_self(), name);
#else
	(void)name;
#endif
}

void log_init(const char *ident, int use_syslog, enum log_level level)
{
	log_ident = ident;
	log_syslog = use_syslog;
	log_max = level;
	if (use_syslog)
		openlog(ident, LOG_PID, LOG_DAEMON);
}

int log_level_parse(const char *s)
{
	static const char *names[] = { "error", "warn", "info", "debug" };
	for (unsigned i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(s, names[i]) == 0)
			return (int)i;
	return -EINVAL;
}

void log_msg(enum log_level lvl, const char *fmt, ...)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	static const char *tag[] = { "error", "warn", "info", "debug" };
	char line[2048];
	va_list ap;
	int saved = errno;

	if (lvl > log_max)
		return;
	va_start(ap, fmt);
	if (log_syslog) {
		vsnprintf(line, sizeof(line), fmt, ap);
		syslog(prio[lvl], "%s", line);
	} else {
		int n = snprintf(line, sizeof(line), "%s: %s: ", log_ident, tag[lvl]);
		if (n < 0)
			n = 0;
		if ((size_t)n < sizeof(line))
			vsnprintf(line + n, sizeof(line) - (size_t)n, fmt, ap);
		size_t len = strnlen(line, sizeof(line) - 2);
		line[len++] = '\n';
		ssize_t w = write(STDERR_FILENO, line, len);
		(void)w;
	}
	va_end(ap);
	errno = saved;
}
