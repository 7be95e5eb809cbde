/*
 * Unit tests for fuse/poll_scan: what a scan queues for each kind of change
 * made to a real folder between two scans (new, changed, deleted, renamed
 * files and folders, chains and cycles of renames, names reused, moves into
 * new and out of vanished folders, files that must settle first), and the
 * answer to a scan request.
 *
 * poll_scan.c belongs to the polling front end, which the unit-test binary
 * does not link (the Makefile links the shared client modules only), so it
 * is compiled into this file. The scanner runs on a temporary folder with a
 * real queue; each check takes every queued entry and compares the list.
 * Folder metadata syncs (a parent's mtime changed) are left out of the
 * comparisons except where a test asks for them: whether a change lands in
 * the same timestamp tick as the previous look is up to the kernel.
 * Flags in the expectations: 1 QF_CONTENT, 2 QF_META, 4 QF_TREE, 16 QF_GONE
 * (17, 18: deletions).
 */
#define _GNU_SOURCE
#include <CUnit/CUnit.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <unistd.h>

#include "../../fuse/poll_scan.c"

#define MAXE 64

struct fx {
	char dir[64];
	struct mirror m;
	struct poll_scan *s;
	char *got[MAXE]; /* entries of the last take, "R from to" / "S path flags" */
	int n;
};

static void fx_init_cfg(struct fx *f, int stable_ms)
{
	struct poll_scan_cfg cfg = { .interval_ms = 10, .stable_ms = stable_ms,
				     .maxwait_ms = 600000, .racy_ms = 0 };
	memset(f, 0, sizeof(*f));
	snprintf(f->dir, sizeof(f->dir), "/tmp/mirrorfs-pollscan.XXXXXX");
	CU_ASSERT_PTR_NOT_NULL_FATAL(mkdtemp(f->dir));
	f->m.backing_fd = open(f->dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
	CU_ASSERT_FATAL(f->m.backing_fd >= 0);
	f->m.q = queue_new();
	f->m.links = links_new();
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->m.q);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->m.links);
	f->s = poll_scan_new(&f->m, &cfg);
	CU_ASSERT_PTR_NOT_NULL_FATAL(f->s);
}

static void fx_init(struct fx *f)
{
	fx_init_cfg(f, 0); /* a changed file is queued at its next look */
}

static void fx_clear(struct fx *f)
{
	for (int i = 0; i < f->n; i++)
		free(f->got[i]);
	f->n = 0;
}

static void fx_release(struct fx *f)
{
	char cmd[128];
	fx_clear(f);
	poll_scan_free(f->s);
	queue_free(f->m.q);
	links_free(f->m.links);
	close(f->m.backing_fd);
	snprintf(cmd, sizeof(cmd), "rm -rf '%s'", f->dir);
	CU_ASSERT_EQUAL(system(cmd), 0);
}

/* ---- changes to the folder */

static void put(struct fx *f, const char *path, const char *text)
{
	int fd = openat(f->m.backing_fd, path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	CU_ASSERT_FATAL(fd >= 0);
	CU_ASSERT_EQUAL(write(fd, text, strlen(text)), (ssize_t)strlen(text));
	close(fd);
}

static void mkd(struct fx *f, const char *path)
{
	CU_ASSERT_EQUAL_FATAL(mkdirat(f->m.backing_fd, path, 0755), 0);
}

static void mv(struct fx *f, const char *from, const char *to)
{
	CU_ASSERT_EQUAL_FATAL(renameat(f->m.backing_fd, from, f->m.backing_fd, to), 0);
}

static void rm(struct fx *f, const char *path)
{
	char cmd[256];
	snprintf(cmd, sizeof(cmd), "rm -rf '%s/%s'", f->dir, path);
	CU_ASSERT_EQUAL(system(cmd), 0);
}

/* ---- scans and what they queued */

static void scan(struct fx *f)
{
	CU_ASSERT_EQUAL(poll_scan_once(f->s, 0), 0);
}

static int is_dir(struct fx *f, const char *path)
{
	struct stat st;
	if (!path[0])
		return 1;
	return fstatat(f->m.backing_fd, path, &st, AT_SYMLINK_NOFOLLOW) == 0 &&
	       S_ISDIR(st.st_mode);
}

/* Take everything queued into f->got, in order. Metadata syncs of folders
 * that exist are left out, unless keep_meta (then only the root's are). */
static void take(struct fx *f, int keep_meta)
{
	struct qentry *e;
	fx_clear(f);
	while ((e = queue_take(f->m.q, 0))) {
		char buf[512];
		if (e->kind == Q_RENAME)
			snprintf(buf, sizeof(buf), "R %s %s", e->path, e->path2);
		else
			snprintf(buf, sizeof(buf), "S %s %u", e->path, e->flags);
		int skip = e->kind == Q_SYNC && e->flags == QF_META &&
			   (keep_meta ? !e->path[0] : is_dir(f, e->path));
		if (!skip && f->n < MAXE)
			f->got[f->n++] = strdup(buf);
		queue_done(f->m.q, e);
	}
}

static void show(struct fx *f, const char *what)
{
	fprintf(stderr, "\n  %s: got %d:", what, f->n);
	for (int i = 0; i < f->n; i++)
		fprintf(stderr, " [%s]", f->got[i]);
	fprintf(stderr, "\n");
}

/* The entries taken must be exactly want (NULL-terminated), in order. */
static void expect(struct fx *f, const char *const *want)
{
	int n = 0, ok = 1;
	while (want[n])
		n++;
	if (n != f->n)
		ok = 0;
	for (int i = 0; ok && i < n; i++)
		if (strcmp(want[i], f->got[i]) != 0)
			ok = 0;
	if (!ok)
		show(f, "unexpected queue");
	CU_ASSERT(ok);
}

/* The same, in any order. */
static void expect_set(struct fx *f, const char *const *want)
{
	int n = 0, ok = 1;
	while (want[n])
		n++;
	if (n != f->n)
		ok = 0;
	for (int i = 0; ok && i < n; i++) {
		int found = 0;
		for (int j = 0; j < f->n; j++)
			found |= strcmp(want[i], f->got[j]) == 0;
		ok = found;
	}
	if (!ok)
		show(f, "unexpected queue");
	CU_ASSERT(ok);
}

#define EXPECT(f, ...) expect(f, (const char *const[]){ __VA_ARGS__, NULL })
#define EXPECT_SET(f, ...) expect_set(f, (const char *const[]){ __VA_ARGS__, NULL })
#define EXPECT_NONE(f) expect(f, (const char *const[]){ NULL })

/* ---- tests */

static void test_baseline_queues_nothing(void)
{
	struct fx f;
	fx_init(&f);
	mkd(&f, "d");
	put(&f, "d/a", "a");
	put(&f, "b", "b");
	scan(&f);
	take(&f, 1);
	EXPECT_NONE(&f);
	scan(&f); /* nothing changed */
	take(&f, 1);
	EXPECT_NONE(&f);
	fx_release(&f);
}

static void test_new_file_settles_first(void)
{
	struct fx f;
	fx_init(&f);
	scan(&f);
	put(&f, "a", "1");
	scan(&f);
	take(&f, 0);
	EXPECT_NONE(&f); /* changed since the last look: not yet */
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S a 1");
	put(&f, "a", "2");
	scan(&f);
	take(&f, 0);
	EXPECT_NONE(&f);
	put(&f, "a", "3"); /* still changing */
	scan(&f);
	take(&f, 0);
	EXPECT_NONE(&f);
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S a 1");
	fx_release(&f);
}

static void test_stable_window(void)
{
	struct fx f;
	fx_init_cfg(&f, 60000);
	scan(&f);
	put(&f, "a", "1");
	scan(&f);
	scan(&f);
	take(&f, 0);
	EXPECT_NONE(&f); /* unchanged, but not for 60 s */
	CU_ASSERT_EQUAL(poll_scan_once(f.s, 1), 0); /* stopping: send it */
	take(&f, 0);
	EXPECT(&f, "S a 1");
	fx_release(&f);
}

static void test_new_folder(void)
{
	struct fx f;
	fx_init(&f);
	scan(&f);
	mkd(&f, "d");
	put(&f, "d/x", "x");
	scan(&f);
	take(&f, 1);
	EXPECT(&f, "S d 2"); /* the folder at once, its file once settled */
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S d/x 1");
	fx_release(&f);
}

static void test_chmod_is_meta(void)
{
	struct fx f;
	fx_init(&f);
	put(&f, "a", "1");
	scan(&f);
	CU_ASSERT_EQUAL(fchmodat(f.m.backing_fd, "a", 0600, 0), 0);
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S a 2");
	mkd(&f, "d");
	scan(&f);
	take(&f, 0);
	CU_ASSERT_EQUAL(fchmodat(f.m.backing_fd, "d", 0700, 0), 0);
	scan(&f);
	take(&f, 1);
	EXPECT(&f, "S d 2");
	fx_release(&f);
}

static void test_deletes(void)
{
	struct fx f;
	fx_init(&f);
	put(&f, "a", "1");
	mkd(&f, "d");
	mkd(&f, "d/e");
	put(&f, "d/e/x", "x");
	put(&f, "d/y", "y");
	scan(&f);
	rm(&f, "a");
	rm(&f, "d");
	scan(&f);
	take(&f, 0);
	EXPECT_SET(&f, "S a 17", "S d 18"); /* a folder goes with what it holds */
	scan(&f);
	take(&f, 1);
	EXPECT_NONE(&f);
	fx_release(&f);
}

static void test_file_rename(void)
{
	struct fx f;
	fx_init(&f);
	put(&f, "a", "content");
	mkd(&f, "d");
	scan(&f);
	mv(&f, "a", "d/b");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "R a d/b");
	mv(&f, "d/b", "d/c");
	put(&f, "d/c", " more"); /* renamed and changed: rename now, content later */
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "R d/b d/c");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S d/c 1");
	fx_release(&f);
}

static void test_folder_rename_takes_subtree(void)
{
	struct fx f;
	char p[64];
	fx_init(&f);
	mkd(&f, "d");
	mkd(&f, "d/sub");
	for (int i = 0; i < 200; i++) {
		snprintf(p, sizeof(p), "d/%s%d", i % 2 ? "sub/" : "", i);
		put(&f, p, "x");
	}
	scan(&f);
	mv(&f, "d", "e");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "R d e");
	scan(&f);
	take(&f, 0);
	EXPECT_NONE(&f); /* the snapshot moved too: nothing new, nothing gone */
	mv(&f, "e/sub", "sub2");
	put(&f, "e/new", "n");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "R e/sub sub2");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S e/new 1");
	fx_release(&f);
}

static void test_rename_chain(void)
{
	struct fx f;
	fx_init(&f);
	put(&f, "a", "A");
	put(&f, "b", "B");
	scan(&f);
	mv(&f, "b", "c");
	mv(&f, "a", "b");
	scan(&f);
	take(&f, 0);
	/* b must move away before a takes its name */
	EXPECT(&f, "R b c", "R a b");
	fx_release(&f);
}

static void test_rename_over_existing(void)
{
	struct fx f;
	fx_init(&f);
	put(&f, "a", "A");
	put(&f, "b", "B");
	scan(&f);
	mv(&f, "a", "b");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "R a b"); /* the old b goes with the rename */
	fx_release(&f);
}

static void test_exchange_falls_back(void)
{
	struct fx f;
	fx_init(&f);
	put(&f, "a", "A");
	put(&f, "b", "B");
	scan(&f);
	mv(&f, "a", "t");
	mv(&f, "b", "a");
	mv(&f, "t", "b");
	scan(&f);
	take(&f, 0);
	/* a cycle: no rename order is safe, both names are sent again */
	EXPECT_SET(&f, "S a 1", "S b 1");
	fx_release(&f);
}

static void test_move_into_new_folder(void)
{
	struct fx f;
	fx_init(&f);
	put(&f, "a", "A");
	put(&f, "b", "B");
	scan(&f);
	mkd(&f, "n");
	mkd(&f, "n/m");
	mv(&f, "a", "n/m/a");
	mv(&f, "b", "n/b");
	scan(&f);
	take(&f, 1);
	/* the server makes the missing folders; their syncs follow */
	EXPECT_SET(&f, "R a n/m/a", "R b n/b", "S n 2", "S n/m 2");
	CU_ASSERT(f.n == 4 && f.got[0][0] == 'R' && f.got[1][0] == 'R');
	fx_release(&f);
}

static void test_move_out_of_deleted_folder(void)
{
	struct fx f;
	fx_init(&f);
	mkd(&f, "d");
	put(&f, "d/x", "X");
	put(&f, "d/y", "Y");
	scan(&f);
	mv(&f, "d/x", "x");
	rm(&f, "d");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "R d/x x", "S d 18"); /* moved out first, then the folder goes */
	fx_release(&f);
}

static void test_folder_renamed_into_new_one_of_its_name(void)
{
	struct fx f;
	fx_init(&f);
	mkd(&f, "d");
	put(&f, "d/x", "X");
	scan(&f);
	mv(&f, "d", "t");
	mkd(&f, "d");
	mv(&f, "t", "d/sub");
	scan(&f);
	take(&f, 0);
	/* "d" -> "d/sub" is impossible on the server while "d" is the source:
	 * both are compared in full instead */
	EXPECT_SET(&f, "S d/sub 4", "S d 4");
	fx_release(&f);
}

static int hold(struct fx *f, const char *path)
{
	int fd = openat(f->m.backing_fd, path, O_RDONLY | O_CLOEXEC);
	CU_ASSERT(fd >= 0);
	return fd;
}

static void test_names_reused(void)
{
	struct fx f;
	int held[3];
	fx_init(&f);
	put(&f, "f", "file");
	mkd(&f, "d");
	put(&f, "d/old", "o");
	scan(&f);
	/* Open, the removed ones keep their inode numbers: the new ones get
	 * others (the filesystem would reuse them at once otherwise, which
	 * looks like a rename: also right, but not what is tested here). */
	held[0] = hold(&f, "f");
	held[1] = hold(&f, "d");
	held[2] = hold(&f, "d/old");
	rm(&f, "f");
	mkd(&f, "f"); /* a file becomes a folder */
	rm(&f, "d");
	mkd(&f, "d"); /* a folder is replaced by another */
	put(&f, "d/new", "n");
	scan(&f);
	take(&f, 0);
	/* over something else of that name: full comparisons, no deletes */
	EXPECT_SET(&f, "S f 4", "S d 4");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S d/new 1");
	close(held[0]);
	held[0] = hold(&f, "f");
	rm(&f, "f");
	put(&f, "f", "file again"); /* and back */
	scan(&f);
	take(&f, 0);
	EXPECT_NONE(&f); /* the new file's sync replaces the folder, once settled */
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S f 1");
	for (int i = 0; i < 3; i++)
		close(held[i]);
	fx_release(&f);
}

static void test_unsent_file_moved(void)
{
	struct fx f;
	fx_init_cfg(&f, 60000);
	scan(&f);
	put(&f, "a", "1");
	scan(&f); /* a is new and not settled: never sent */
	mv(&f, "a", "b");
	scan(&f);
	take(&f, 0);
	/* nothing to rename on the server; the old name is cleared in case
	 * something older was there */
	EXPECT(&f, "S a 17");
	CU_ASSERT_EQUAL(poll_scan_once(f.s, 1), 0);
	take(&f, 0);
	EXPECT(&f, "S b 1");
	fx_release(&f);
}

static void test_symlinks_and_fifos(void)
{
	struct fx f;
	fx_init(&f);
	scan(&f);
	CU_ASSERT_EQUAL(symlinkat("target", f.m.backing_fd, "l"), 0);
	CU_ASSERT_EQUAL(mkfifoat(f.m.backing_fd, "p", 0644), 0);
	scan(&f);
	take(&f, 0);
	EXPECT_SET(&f, "S l 1", "S p 1"); /* at once: nothing to settle */
	mkd(&f, "d");
	scan(&f);
	take(&f, 0);
	mv(&f, "l", "d/l");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "R l d/l");
	fx_release(&f);
}

static void test_hard_links_registered(void)
{
	struct fx f;
	struct stat st;
	fx_init(&f);
	put(&f, "a", "A");
	scan(&f);
	CU_ASSERT_EQUAL(linkat(f.m.backing_fd, "a", f.m.backing_fd, "b", 0), 0);
	scan(&f);
	take(&f, 0);
	EXPECT_NONE(&f); /* b is a new name: it settles first */
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S b 1"); /* a new name, not a move (a still has it) */
	CU_ASSERT_EQUAL(fstatat(f.m.backing_fd, "a", &st, 0), 0);
	char **o = links_others(f.m.links, st.st_ino, "b");
	CU_ASSERT(o && o[0] && strcmp(o[0], "a") == 0 && !o[1]);
	links_strv_free(o);
	fx_release(&f);
}

/* The uploader looked for a file after its folder was renamed, before the
 * scan found the rename (a miss): the file is synced again under the new
 * name, after the rename. */
static void test_miss_follows_rename(void)
{
	struct fx f;
	fx_init(&f);
	mkd(&f, "d");
	put(&f, "d/a", "A");
	put(&f, "d/b", "B");
	scan(&f);
	CU_ASSERT_EQUAL(queue_note(f.m.q, QN_MISS, "d/a"), 0);
	CU_ASSERT_EQUAL(queue_note(f.m.q, QN_MISS, "gone/x"), 0); /* not in the snapshot */
	mv(&f, "d", "e");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "R d e", "S e/a 1");
	CU_ASSERT_EQUAL(queue_note(f.m.q, QN_MISS, "e/b"), 0); /* no rename: same name */
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S e/b 1");
	CU_ASSERT_PTR_NULL(queue_take_notes(f.m.q, QN_MISS)); /* all taken */
	fx_release(&f);
}

/* An upload the scanner did not ask for (a subtree comparison sent what
 * was there at the time): a path the snapshot does not hold is deleted
 * again on the server, at the path where the queued renames carry it. */
static void test_unknown_upload_deleted(void)
{
	struct fx f;
	fx_init(&f);
	mkd(&f, "d");
	put(&f, "d/a", "A");
	scan(&f);
	take(&f, 0);
	CU_ASSERT_EQUAL(queue_note(f.m.q, QN_UPLOAD, "d/a"), 0);   /* known */
	CU_ASSERT_EQUAL(queue_note(f.m.q, QN_UPLOAD, "d/tmp"), 0); /* a temporary, gone */
	CU_ASSERT_EQUAL(queue_note(f.m.q, QN_UPLOAD, "x"), 0);     /* a folder, gone */
	CU_ASSERT_EQUAL(queue_note(f.m.q, QN_UPLOAD, "x/y"), 0);   /* goes with x */
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "S d/tmp 17", "S x 17");
	/* noted before the scan that queues the rename of its folder */
	CU_ASSERT_EQUAL(queue_note(f.m.q, QN_UPLOAD, "d/t2"), 0);
	mv(&f, "d", "e");
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "R d e", "S e/t2 17");
	/* noted while a rename is still queued */
	mv(&f, "e", "g");
	scan(&f);
	CU_ASSERT_EQUAL(queue_note(f.m.q, QN_UPLOAD, "e/t3"), 0);
	scan(&f);
	take(&f, 0);
	EXPECT(&f, "R e g", "S g/t3 17");
	fx_release(&f);
}

/* A request is answered once every change made before it is queued. */
static void test_request_waits_for_settling(void)
{
	struct fx f;
	int sv[2];
	char buf[16];
	fx_init_cfg(&f, 150);
	scan(&f);
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	CU_ASSERT_EQUAL_FATAL(poll_scan_start(f.s), 0);
	put(&f, "a", "1");
	poll_scan_request(f.s, sv[1]);
	ssize_t n = read(sv[0], buf, sizeof(buf) - 1); /* blocks until answered */
	CU_ASSERT_EQUAL(n, 3);
	CU_ASSERT(n == 3 && memcmp(buf, "ok\n", 3) == 0);
	poll_scan_stop(f.s);
	take(&f, 0);
	EXPECT(&f, "S a 1");
	close(sv[0]);
	/* a request after the stop is refused at once */
	CU_ASSERT_EQUAL_FATAL(socketpair(AF_UNIX, SOCK_STREAM, 0, sv), 0);
	poll_scan_request(f.s, sv[1]);
	n = read(sv[0], buf, sizeof(buf) - 1);
	CU_ASSERT(n > 0 && memcmp(buf, "error", 5) == 0);
	close(sv[0]);
	fx_release(&f);
}

int suite_poll_scan(void)
{
	CU_pSuite s = CU_add_suite("poll_scan", NULL, NULL);
	if (!s)
		return CU_get_error();
	if (!CU_add_test(s, "baseline_queues_nothing", test_baseline_queues_nothing) ||
	    !CU_add_test(s, "new_file_settles_first", test_new_file_settles_first) ||
	    !CU_add_test(s, "stable_window", test_stable_window) ||
	    !CU_add_test(s, "new_folder", test_new_folder) ||
	    !CU_add_test(s, "chmod_is_meta", test_chmod_is_meta) ||
	    !CU_add_test(s, "deletes", test_deletes) ||
	    !CU_add_test(s, "file_rename", test_file_rename) ||
	    !CU_add_test(s, "folder_rename_takes_subtree", test_folder_rename_takes_subtree) ||
	    !CU_add_test(s, "rename_chain", test_rename_chain) ||
	    !CU_add_test(s, "rename_over_existing", test_rename_over_existing) ||
	    !CU_add_test(s, "exchange_falls_back", test_exchange_falls_back) ||
	    !CU_add_test(s, "move_into_new_folder", test_move_into_new_folder) ||
	    !CU_add_test(s, "move_out_of_deleted_folder", test_move_out_of_deleted_folder) ||
	    !CU_add_test(s, "folder_renamed_into_new_one_of_its_name",
			 test_folder_renamed_into_new_one_of_its_name) ||
	    !CU_add_test(s, "names_reused", test_names_reused) ||
	    !CU_add_test(s, "unsent_file_moved", test_unsent_file_moved) ||
	    !CU_add_test(s, "symlinks_and_fifos", test_symlinks_and_fifos) ||
	    !CU_add_test(s, "hard_links_registered", test_hard_links_registered) ||
	    !CU_add_test(s, "miss_follows_rename", test_miss_follows_rename) ||
	    !CU_add_test(s, "unknown_upload_deleted", test_unknown_upload_deleted) ||
	    !CU_add_test(s, "request_waits_for_settling", test_request_waits_for_settling))
		return CU_get_error();
	return 0;
}
