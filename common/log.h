/*
 * log: the process-wide log sink, with levels.
 *
 * Output goes to stderr (foreground) or to syslog (daemon), chosen once by
 * log_init() before threads start. One line per event; failures name the
 * path and the reason. Thread-safe: each message is written with a single
 * write(2) (stderr) or syslog(3) call.
 */
#ifndef MIRROR_LOG_H
#define MIRROR_LOG_H

enum log_level { LOG_LVL_ERROR = 0, LOG_LVL_WARN, LOG_LVL_INFO, LOG_LVL_DEBUG };

/* Set the sink. ident: program name (borrowed, must outlive the process).
 * use_syslog: 1 for syslog, 0 for stderr. Cannot fail. */
void log_init(const char *ident, int use_syslog, enum log_level level);

/* Parse "error", "warn", "info", "debug". Returns the level or -EINVAL. */
int log_level_parse(const char *s);

void log_msg(enum log_level lvl, const char *fmt, ...)
	__attribute__((format(printf, 2, 3)));

/* Name the calling thread (at most 15 bytes) for ps, top and perf, which
 * otherwise show every thread under the program's name. Does nothing where
 * the platform cannot. */
void log_thread_name(const char *name);

#define log_error(...) log_msg(LOG_LVL_ERROR, __VA_ARGS__)
#define log_warn(...) log_msg(LOG_LVL_WARN, __VA_ARGS__)
#define log_info(...) log_msg(LOG_LVL_INFO, __VA_ARGS__)
#define log_debug(...) log_msg(LOG_LVL_DEBUG, __VA_ARGS__)

#endif
