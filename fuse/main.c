/*
 * mirrorfs: mount a mirrored passthrough of BACKING at MOUNTPOINT, or talk
 * to a running one (status, sync). Option parsing, validation of the user's
 * input (every mistake gets a clear message before anything is mounted),
 * the state folder, and the FUSE session's lifetime.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cjson/cJSON.h>
#include <sodium.h>

#include "fs.h"
#include "hash.h"
#include "http.h"
#include "kio.h"
#include "links.h"
#include "log.h"
#include "mirror.h"
#include "path.h"
#include "proto.h"
#include "qstore.h"
#include "queue.h"
#include "ra.h"
#include "setup.h"
#include "status.h"

#define MIRRORFS_VERSION "0.1.0"

/* FUSE threads at most (libfuse's default). Each that has served a large
 * WRITE keeps a 1 MiB request buffer: with 32, cp -a of a 1 GiB tree
 * peaked at 101 MiB of RSS, with 10 at 76 MiB; tar x and small files took
 * the same time within this machine's noise. */
#define FUSE_THREADS_MAX 10

static void usage(FILE *f)
{
	fprintf(f,
		"usage: mirrorfs BACKING MOUNTPOINT --server URL [options]\n"
		"       mirrorfs status MOUNTPOINT [--json]\n"
		"       mirrorfs sync MOUNTPOINT [--timeout SECONDS]\n"
		"\n"
		"Mounts a passthrough of the folder BACKING at MOUNTPOINT and mirrors every\n"
		"change made through it to the mirrord server at URL. Stop with\n"
		"'fusermount3 -u MOUNTPOINT'.\n"
		"\n"
		"options:\n"
		"  --server URL         mirrord's address, http://HOST:PORT or https://HOST:PORT\n"
		"                       (-o server=URL)\n"
		"  --token-file F       send the token in F, a copy of mirrord's (-o token_file=F)\n"
		"  --cacert F           trust the https:// server's certificate if signed by a CA\n"
		"                       in F (PEM), besides the system's (-o cacert=F)\n"
		"  --state-dir DIR      where the client keeps its state (-o state_dir=DIR)\n"
		"                       default: $XDG_STATE_HOME/mirrorfs/<id of BACKING>\n"
		"  --log-level LEVEL    error, warn, info (default) or debug (-o log_level=L)\n"
		"  -f                   stay in the foreground, log to stderr\n"
		"  -d                   FUSE debug output (implies -f)\n"
		"  -s                   single-threaded FUSE loop\n"
		"  -o no_writeback      no kernel write-back cache: each write() reaches BACKING\n"
		"                       before it returns (slower)\n"
		"  -o xattr             pass extended attributes through (each write() then\n"
		"                       costs the kernel a round trip for security.capability)\n"
		"  -o OPT[,OPT...]      FUSE mount options (allow_other, ...)\n"
		"  -h, --help           this text\n"
		"  -V, --version        version\n");
}

struct opts {
	struct setup_opts c; /* --server and the other shared options */
	const char *backing, *mountpoint;
	int foreground, debug, single, no_writeback, xattr;
	int shared; /* allow_other or allow_root: others use the mount */
	char fuse_o[4096]; /* FUSE -o options that are not ours */
	char *o_lists[16]; /* owned copies of the -o lists: our options point into them */
	int n_lists;
};

static void opts_release(struct opts *o)
{
	for (int i = 0; i < o->n_lists; i++)
		free(o->o_lists[i]);
	o->n_lists = 0;
}

/* Options that mount(8) or mount.fuse3 pass on from an fstab line but
 * that mean nothing to a passthrough (the kernel handles atime for FUSE
 * itself): accepted and ignored, so that fstab lines work as written. */
static int ignored_mount_option(const char *t)
{
	static const char *const names[] = { "defaults", "relatime", "norelatime", "strictatime",
					      "nostrictatime", "lazytime", "nolazytime",
					      "nodiratime", "diratime", "atime", "auto", "noauto",
					      "nofail", "_netdev", "user", "nouser", "users" };
	for (size_t i = 0; i < sizeof(names) / sizeof(names[0]); i++)
		if (strcmp(t, names[i]) == 0)
			return 1;
	return strncmp(t, "x-", 2) == 0 || strncmp(t, "comment=", 8) == 0;
}

/* Split a -o list: ours go to o, the rest to o->fuse_o. */
static int parse_o(struct opts *o, char *list)
{
	for (char *next, *t = list; t; t = next) {
		next = strchr(t, ',');
		if (next)
			*next++ = '\0';
		if (*t == '\0')
			continue;
		if (strncmp(t, "server=", 7) == 0) {
			o->c.server = t + 7;
		} else if (strncmp(t, "state_dir=", 10) == 0) {
			o->c.state_dir = t + 10;
		} else if (strncmp(t, "token_file=", 11) == 0) {
			o->c.token_file = t + 11;
		} else if (strncmp(t, "cacert=", 7) == 0) {
			o->c.cacert = t + 7;
		} else if (strncmp(t, "log_level=", 10) == 0) {
			if ((o->c.level = log_level_parse(t + 10)) < 0) {
				fprintf(stderr, "mirrorfs: invalid log level '%s'\n", t + 10);
				return -EINVAL;
			}
		} else if (strcmp(t, "no_writeback") == 0) {
			o->no_writeback = 1;
		} else if (strcmp(t, "xattr") == 0) {
			o->xattr = 1;
		} else if (ignored_mount_option(t)) {
			continue;
		} else {
			if (strcmp(t, "allow_other") == 0 || strcmp(t, "allow_root") == 0)
				o->shared = 1;
			size_t n = strlen(o->fuse_o);
			if (n + strlen(t) + 2 >= sizeof(o->fuse_o))
				return -E2BIG;
			snprintf(o->fuse_o + n, sizeof(o->fuse_o) - n, "%s%s", n ? "," : "", t);
		}
	}
	return 0;
}

/* After INIT (kio_after_init): the mount reads ahead as BACKING's disk. */
static void match_readahead(void *arg)
{
	const struct mirror *m = arg;
	int r = ra_match(m->mountpoint, m->backing);
	if (r < 0)
		log_debug("readahead of the mount left as it is: %s", strerror(-r));
}

/* -o fsname=BACKING, so that findmnt and df name the mirrored folder
 * (commas and backslashes escaped as libfuse's option parser expects). */
static int add_fsname(struct fuse_args *args, const char *backing)
{
	char buf[PATH_MAX * 2 + 16];
	size_t n = 0;
	const char *pre = "fsname=";
	while (*pre)
		buf[n++] = *pre++;
	for (const char *c = backing; *c && n + 3 < sizeof(buf); c++) {
		if (*c == ',' || *c == '\\')
			buf[n++] = '\\';
		buf[n++] = *c;
	}
	buf[n] = '\0';
	return fuse_opt_add_arg(args, buf);
}

static int parse_args(int argc, char **argv, struct opts *o)
{
	memset(o, 0, sizeof(*o));
	o->c.level = LOG_LVL_INFO;
	int r;
	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		const char *val = i + 1 < argc ? argv[i + 1] : NULL;
		if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
			usage(stdout);
			exit(0);
		} else if (strcmp(a, "-V") == 0 || strcmp(a, "--version") == 0) {
			printf("mirrorfs %s\n", MIRRORFS_VERSION);
			exit(0);
		} else if (strcmp(a, "-f") == 0) {
			o->foreground = 1;
		} else if (strcmp(a, "-d") == 0) {
			o->debug = o->foreground = 1;
		} else if (strcmp(a, "-s") == 0) {
			o->single = 1;
		} else if (strcmp(a, "-o") == 0 && val) {
			if (o->n_lists == (int)(sizeof(o->o_lists) / sizeof(o->o_lists[0]))) {
				fprintf(stderr, "mirrorfs: too many -o options\n");
				return -EINVAL;
			}
			char *copy = strdup(val);
			if (!copy)
				return -ENOMEM;
			o->o_lists[o->n_lists++] = copy; /* kept: options point into it */
			if (parse_o(o, copy) < 0)
				return -EINVAL;
			i++;
		} else if ((r = setup_parse_opt("mirrorfs", &o->c, argc, argv, &i)) != 0) {
			if (r < 0)
				return r;
		} else if (a[0] == '-' && a[1] != '\0') {
			fprintf(stderr, "mirrorfs: unknown or incomplete option '%s'\n", a);
			return -EINVAL;
		} else if (!o->backing) {
			o->backing = a;
		} else if (!o->mountpoint) {
			o->mountpoint = a;
		} else {
			fprintf(stderr, "mirrorfs: unexpected argument '%s'\n", a);
			return -EINVAL;
		}
	}
	if (!o->backing || !o->mountpoint) {
		fprintf(stderr, "mirrorfs: BACKING and MOUNTPOINT are required\n");
		return -EINVAL;
	}
	if (!o->c.server) {
		fprintf(stderr, "mirrorfs: --server URL is required\n");
		return -EINVAL;
	}
	return 0;
}

static int is_empty_dir(const char *p)
{
	int fd = open(p, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	if (fd < 0)
		return -errno;
	DIR *d = fdopendir(fd);
	if (!d) {
		close(fd);
		return -errno;
	}
	struct dirent *de;
	int empty = 1;
	while ((de = readdir(d)))
		if (strcmp(de->d_name, ".") && strcmp(de->d_name, ".."))
			empty = 0;
	closedir(d);
	return empty;
}

static int mount_main(int argc, char **argv)
{
	struct opts o;
	struct mirror m;
	int ret = 1;
	struct fuse_session *se = NULL;
	struct fs *fs = NULL;
	struct fuse_args args = FUSE_ARGS_INIT(0, NULL);

	setup_init(&m, "mirrorfs");
	if (parse_args(argc, argv, &o) < 0) {
		opts_release(&o);
		usage(stderr);
		return 2;
	}
	log_init("mirrorfs", 0, (enum log_level)o.c.level);
	if (http_url_check(o.c.server) < 0) {
		fprintf(stderr,
			"mirrorfs: invalid server URL '%s' (expected http://HOST:PORT or https://HOST:PORT)\n",
			o.c.server);
		opts_release(&o);
		return 2;
	}
	if (!(m.backing = setup_existing_dir("BACKING", o.backing)) ||
	    !(m.mountpoint = setup_existing_dir("MOUNTPOINT", o.mountpoint)))
		goto out;
	if (path_is_under(m.mountpoint + 1, m.backing + 1) ||
	    path_is_under(m.backing + 1, m.mountpoint + 1)) {
		fprintf(stderr, "mirrorfs: BACKING '%s' and MOUNTPOINT '%s' must not contain each other\n",
			m.backing, m.mountpoint);
		goto out;
	}
	int empty = is_empty_dir(m.mountpoint);
	if (empty <= 0) {
		fprintf(stderr, "mirrorfs: MOUNTPOINT '%s' %s\n", m.mountpoint,
			empty == 0 ? "is not empty" : strerror(-empty));
		goto out;
	}
	if (setup_set_access(&m, o.c.token_file, o.c.cacert) < 0 ||
	    setup_mirror(&m, o.c.state_dir, m.mountpoint, o.c.server) < 0)
		goto out;

	/* default_permissions only for a mount others use (allow_other,
	 * allow_root): the kernel then checks every access against the
	 * attributes, and each create in a folder costs a GETATTR of it (a
	 * create invalidates the folder's attributes). A mount only its owner
	 * uses needs no such check: the daemon runs with the caller's
	 * credentials, and BACKING refuses what the caller may not do. */
	if (fuse_opt_add_arg(&args, "mirrorfs") < 0 ||
	    (o.fuse_o[0] && (fuse_opt_add_arg(&args, "-o") < 0 ||
			     fuse_opt_add_arg(&args, o.fuse_o) < 0)) ||
	    fuse_opt_add_arg(&args, "-o") < 0 ||
	    fuse_opt_add_arg(&args, o.shared ? "subtype=mirrorfs,default_permissions"
					     : "subtype=mirrorfs") < 0 ||
	    fuse_opt_add_arg(&args, "-o") < 0 || add_fsname(&args, m.backing) < 0 ||
	    (o.debug && fuse_opt_add_arg(&args, "-d") < 0))
		goto out;
	if (!(fs = fs_new(&m, (o.no_writeback ? 0 : FS_WRITEBACK) | (o.xattr ? FS_XATTR : 0) |
				   (o.shared ? 0 : FS_PRIVATE)))) {
		fprintf(stderr, "mirrorfs: cannot open BACKING '%s': %s\n", m.backing, strerror(errno));
		goto out;
	}
	se = fuse_session_new(&args, &fs_ops, sizeof(fs_ops), fs);
	if (!se) {
		fprintf(stderr, "mirrorfs: invalid FUSE options '%s'\n", o.fuse_o);
		goto out;
	}
	fs_set_session(fs, se);
	if (fuse_session_mount(se, m.mountpoint) != 0) {
		fprintf(stderr, "mirrorfs: cannot mount on '%s'\n", m.mountpoint);
		goto out;
	}
	kio_after_init(match_readahead, &m);
	if (kio_install(se) < 0) {
		fprintf(stderr, "mirrorfs: cannot set up the FUSE session's I/O\n");
		goto unmount;
	}
	if (fuse_set_signal_handlers(se) != 0)
		goto unmount;
	if (fuse_daemonize(o.foreground) != 0)
		goto unmount;
	if (!o.foreground)
		log_init("mirrorfs", 1, (enum log_level)o.c.level);
	log_info("mirroring %s (mounted at %s) to %s", m.backing, m.mountpoint, m.server);
	log_info("%s", hash_impl_desc());
	if (o.single) {
		ret = fuse_session_loop(se) ? 1 : 0;
	} else {
		struct fuse_loop_config *lc = fuse_loop_cfg_create();
		if (!lc)
			goto unmount;
		fuse_loop_cfg_set_max_threads(lc, FUSE_THREADS_MAX);
		fuse_loop_cfg_set_clone_fd(lc, 1);
		ret = fuse_session_loop_mt(se, lc) ? 1 : 0;
		fuse_loop_cfg_destroy(lc);
	}
	fuse_remove_signal_handlers(se);
unmount:
	fs_stop(fs);
	fuse_session_unmount(se);
out:
	if (se)
		fuse_session_destroy(se); /* runs fs_destroy: drains and stops the uploader */
	fs_free(fs);
	fuse_opt_free_args(&args);
	opts_release(&o);
	setup_release(&m);
	return ret;
}

int main(int argc, char **argv)
{
	/* status and sync ask the mount (an ioctl): no libsodium, no libcurl,
	 * and no time spent choosing a hash code (`sync` is in every lag
	 * figure of the benchmarks). */
	if (argc >= 2 && strcmp(argv[1], "status") == 0)
		return status_cmd(argc - 2, argv + 2);
	if (argc >= 2 && strcmp(argv[1], "sync") == 0)
		return sync_cmd(argc - 2, argv + 2);
	if (hash_init_lib() < 0 || http_global_init() < 0) {
		fprintf(stderr, "mirrorfs: cannot initialise libsodium/libcurl\n");
		return 1;
	}
	return mount_main(argc, argv);
}
