#define _GNU_SOURCE
#include "worker.h"

#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sodium.h>
#include <unistd.h>

#include "batch.h"
#include "compress.h"
#include "links.h"
#include "log.h"
#include "ofile.h"
#include "path.h"
#include "queue.h"
#include "record.h"
#include "safeopen.h"

int worker_init(struct worker *w, struct mirror *m)
{
	memset(w, 0, sizeof(*w));
	w->m = m;
	buf_init(&w->resp, HTTP_RESP_MAX);
	if (record_open(m->state_dir, &w->rec) < 0) {
		log_warn("%s/record.db: cannot keep the record of sent files", m->state_dir);
		w->rec = NULL; /* reconciliation then hashes more */
	}
	record_share_known(w->rec, m->known);
	int r = http_init(&w->http, m->server, m->client_id);
	if (r == 0 && (r = http_set_auth(&w->http, m->token, m->cacert)) < 0)
		http_release(&w->http);
	return r;
}

void worker_release(struct worker *w)
{
	if (!w)
		return;
	batch_free(w);
	http_release(&w->http);
	buf_release(&w->resp);
	record_close(w->rec);
}

enum send_result send_classify(long status)
{
	if (status >= 200 && status < 300)
		return SEND_OK;
	if (status == 404)
		return SEND_NOTFOUND;
	if (status == 409)
		return SEND_MISSING;
	if (status == 408 || status == 429 || status >= 500)
		return SEND_RETRY;
	return SEND_REJECTED;
}

/* Describe a failed answer in w->why from its JSON error body. */
static void describe(struct worker *w, long status)
{
	cJSON *j = cJSON_ParseWithLength(w->resp.data ? w->resp.data : "", w->resp.len);
	const cJSON *e = cJSON_GetObjectItemCaseSensitive(j, "error");
	snprintf(w->why, sizeof(w->why), "server answered %ld: %s", status,
		 cJSON_IsString(e) ? e->valuestring : "(no error text)");
	cJSON_Delete(j);
}

void worker_offline(struct worker *w)
{
	struct mirror *m = w->m;
	pthread_mutex_lock(&m->stats_lock);
	if (!m->stats.offline_since) {
		m->stats.offline_since = time(NULL);
		log_warn("server unreachable: %s; changes are kept and retried", w->why);
	}
	/* Status shows why (a refused token, an untrusted certificate, ...). */
	snprintf(m->stats.last_error, sizeof(m->stats.last_error), "%s", w->why);
	m->stats.last_error_at = time(NULL);
	pthread_mutex_unlock(&m->stats_lock);
}

static enum send_result request_loop(struct worker *w, const char *method, const char *target,
				     const void *body, size_t len, uint64_t seq,
				     const char *encoding, const char *header, long *status)
{
	for (unsigned attempt = 1;; attempt++) {
		*status = 0;
		w->http.encoding = encoding;
		w->http.extra = header;
		int r = http_request(&w->http, method, target, body, len, seq, &w->resp, status);
		if (r == 0 && send_classify(*status) != SEND_RETRY)
			return SEND_OK;
		if (r < 0)
			snprintf(w->why, sizeof(w->why), "cannot reach %s: %s", w->m->server,
				 w->http.err[0] ? w->http.err : strerror(-r));
		else
			describe(w, *status);
		worker_offline(w);
		if (!w->nap || w->nap(w->nap_arg, attempt))
			return SEND_RETRY;
	}
}

enum send_result worker_request(struct worker *w, const char *method, const char *target,
				const void *body, size_t len, uint64_t seq, long *status)
{
	return request_loop(w, method, target, body, len, seq, NULL, NULL, status);
}

enum send_result worker_request_enc(struct worker *w, const char *method, const char *target,
				    const void *body, size_t len, const char *encoding,
				    const char *header, long *status)
{
	return request_loop(w, method, target, body, len, 0, encoding, header, status);
}

/* A JSON body this long or longer goes compressed when mirrord takes that
 * ("zjson"): a commit's chunk list and a query are mostly hex ids, which
 * zstd brings to a little over half. */
#define JSON_COMPRESS_MIN 1024

/* POST the JSON text body (zstd-encoded when that pays, see above). */
static enum send_result post_json(struct worker *w, const char *target, const char *body,
				  uint64_t seq, long *status)
{
	size_t len = strlen(body);
	struct buf z;
	enum send_result r;
	buf_init(&z, 0);
	if (w->m->server_zjson && len >= JSON_COMPRESS_MIN &&
	    compress_chunk((const uint8_t *)body, len, &z) == 1)
		r = request_loop(w, "POST", target, z.data, z.len, seq, "zstd", NULL, status);
	else
		r = request_loop(w, "POST", target, body, len, seq, NULL, NULL, status);
	buf_release(&z);
	return r;
}

enum send_result worker_probe(struct worker *w)
{
	long status = 0;
	enum send_result r = worker_request(w, "GET", "/v1/ping", NULL, 0, 0, &status);
	if (r != SEND_OK)
		return r;
	cJSON *j = cJSON_ParseWithLength(w->resp.data ? w->resp.data : "", w->resp.len);
	w->m->server_delta = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "delta"));
	w->m->server_bundle = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "bundle"));
	w->m->server_stream = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "stream"));
	w->m->server_refs = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "refs"));
	w->m->server_zjson = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "zjson"));
	w->m->server_brief = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "brief"));
	w->m->server_patch = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "patch"));
	w->m->server_move = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "move"));
	w->m->server_stage = cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "stage"));
	w->m->server_bare = w->m->server_stream &&
			    cJSON_IsTrue(cJSON_GetObjectItemCaseSensitive(j, "bare"));
	cJSON_Delete(j);
	return SEND_OK;
}

/* Queue a metadata sync of path's parent folder. */
static void recheck_parent(struct worker *w, const char *path)
{
	char *parent = strndup(path, path_parent_len(path));
	if (parent && queue_sync_since(w->m->q, parent, QF_META, w->since) < 0)
		log_error("cannot queue change: out of memory");
	free(parent);
}

void worker_applied(struct worker *w, const struct proto_op *op)
{
	/* Another worker may have applied an op in the same folder with a
	 * newer folder mtime before this one: check the folder's mtime again
	 * once this is done, so the last word is the newest. */
	if (atomic_load(&w->m->busy_workers) > 1) {
		if (op->has_pmtime)
			recheck_parent(w, op->path);
		if (op->has_pmtime2)
			recheck_parent(w, op->path2);
	}
	pthread_mutex_lock(&w->m->stats_lock);
	w->m->stats.ops_applied++;
	w->m->stats.last_ok = time(NULL);
	w->m->stats.offline_since = 0;
	pthread_mutex_unlock(&w->m->stats_lock);
}

enum send_result worker_send_op(struct worker *w, const struct proto_op *op, uint64_t seq,
				cJSON **reply)
{
	long status = 0;
	enum send_result res;
	char *body = proto_op_print(op, 0);
	if (!body) {
		snprintf(w->why, sizeof(w->why), "out of memory");
		return SEND_LOCAL;
	}
	res = post_json(w, "/v1/op", body, seq, &status);
	free(body);
	if (res != SEND_OK)
		return res;
	res = send_classify(status);
	if (res == SEND_OK) {
		worker_applied(w, op);
		return SEND_OK;
	}
	describe(w, status);
	if (res == SEND_MISSING && reply)
		*reply = cJSON_ParseWithLength(w->resp.data ? w->resp.data : "", w->resp.len);
	return res;
}

enum send_result worker_query(struct worker *w, const struct hash_id *const *ids, size_t n,
			      uint8_t **missing)
{
	char hex[HASH_HEX_LEN + 1];
	long status = 0;
	enum send_result res = SEND_LOCAL;
	cJSON *reply = NULL;
	char *body = NULL;

	*missing = calloc(n ? n : 1, 1);
	cJSON *q = cJSON_CreateObject();
	cJSON *arr = q ? cJSON_AddArrayToObject(q, "ids") : NULL;
	if (!*missing || !arr)
		goto out;
	for (size_t i = 0; i < n; i++) {
		hash_to_hex(ids[i], hex);
		if (!cJSON_AddItemToArray(arr, cJSON_CreateString(hex)))
			goto out;
	}
	if (!(body = cJSON_PrintUnformatted(q)))
		goto out;
	res = post_json(w, "/v1/chunks/query", body, 0, &status);
	if (res != SEND_OK)
		goto out;
	res = send_classify(status);
	if (res != SEND_OK) {
		snprintf(w->why, sizeof(w->why), "chunk query refused with %ld", status);
		goto out;
	}
	reply = cJSON_ParseWithLength(w->resp.data ? w->resp.data : "", w->resp.len);
	const cJSON *miss = cJSON_GetObjectItemCaseSensitive(reply, "missing");
	const cJSON *it;
	if (!cJSON_IsArray(miss)) {
		snprintf(w->why, sizeof(w->why), "malformed answer to chunk query");
		res = SEND_RETRY;
		goto out;
	}
	cJSON_ArrayForEach(it, miss) {
		if (cJSON_IsNumber(it) && it->valuedouble >= 0 && it->valuedouble < (double)n)
			(*missing)[(size_t)it->valuedouble] = 1;
	}
	res = SEND_OK;
out:
	if (res != SEND_OK) {
		free(*missing);
		*missing = NULL;
	}
	cJSON_Delete(q);
	cJSON_Delete(reply);
	free(body);
	return res;
}

enum send_result worker_signatures(struct worker *w, const char *path, uint32_t block,
				   const uint64_t *off, const uint64_t *len, size_t nr,
				   uint8_t **sigs, size_t *cnt)
{
	long status = 0;
	enum send_result res = SEND_LOCAL;
	cJSON *reply = NULL, *e;
	char *body = NULL;

	memset(sigs, 0, nr * sizeof(*sigs));
	memset(cnt, 0, nr * sizeof(*cnt));
	cJSON *q = cJSON_CreateObject();
	cJSON *arr = q ? cJSON_AddArrayToObject(q, "ranges") : NULL;
	if (!arr || !cJSON_AddStringToObject(q, "path", path) ||
	    !cJSON_AddNumberToObject(q, "block", block))
		goto out;
	for (size_t i = 0; i < nr; i++) {
		cJSON *r = cJSON_CreateArray();
		if (!r || !cJSON_AddItemToArray(arr, r)) {
			cJSON_Delete(r);
			goto out;
		}
		if (!cJSON_AddItemToArray(r, cJSON_CreateNumber((double)off[i])) ||
		    !cJSON_AddItemToArray(r, cJSON_CreateNumber((double)len[i])))
			goto out;
	}
	if (!(body = cJSON_PrintUnformatted(q)))
		goto out;
	res = post_json(w, "/v1/sig", body, 0, &status);
	if (res != SEND_OK)
		goto out;
	if (status == 404)
		goto out; /* SEND_OK, no signatures */
	res = SEND_LOCAL;
	if (status != 200) {
		snprintf(w->why, sizeof(w->why), "signature request refused with %ld", status);
		goto out;
	}
	reply = cJSON_ParseWithLength(w->resp.data ? w->resp.data : "", w->resp.len);
	const cJSON *list = cJSON_GetObjectItemCaseSensitive(reply, "sigs");
	if (!cJSON_IsArray(list) || cJSON_GetArraySize(list) != (int)nr)
		goto bad;
	size_t i = 0;
	cJSON_ArrayForEach(e, list) {
		size_t max = (size_t)(len[i] / block) * RSIG_ENTRY, got = 0;
		if (!cJSON_IsString(e) || strlen(e->valuestring) / 4 * 3 > max + 2 ||
		    !(sigs[i] = malloc(max + 3)) ||
		    sodium_base642bin(sigs[i], max + 3, e->valuestring, strlen(e->valuestring), NULL,
				      &got, NULL, sodium_base64_VARIANT_ORIGINAL) != 0 ||
		    got > max || got % RSIG_ENTRY)
			goto bad;
		cnt[i++] = got / RSIG_ENTRY;
	}
	res = SEND_OK;
	goto out;
bad:
	snprintf(w->why, sizeof(w->why), "malformed answer to a signature request");
out:
	if (res != SEND_OK) {
		for (size_t i = 0; i < nr; i++) {
			free(sigs[i]);
			sigs[i] = NULL;
			cnt[i] = 0;
		}
	}
	cJSON_Delete(q);
	cJSON_Delete(reply);
	free(body);
	return res;
}

void worker_fill_pmtime(struct worker *w, const char *path, struct timespec *ts, int *has)
{
	struct stat st;
	char *parent;
	*has = 0;
	if (path[0] == '\0')
		return;
	parent = strndup(path, path_parent_len(path));
	if (!parent)
		return;
	if (safe_lstat(w->m->backing_fd, parent, &st) == 0 && S_ISDIR(st.st_mode)) {
		*ts = st.st_mtim;
		*has = 1;
	}
	free(parent);
}

/* Send op now, or put it in the batch when the caller batches. */
static enum send_result send_or_batch(struct worker *w, const struct proto_op *op, uint64_t seq)
{
	if (w->batching && w->m->server_bundle)
		return batch_add_op(w, op, seq);
	return worker_send_op(w, op, seq, NULL);
}

static enum send_result send_delete(struct worker *w, const char *path, uint64_t seq)
{
	struct proto_op op = { .kind = OP_DELETE, .path = (char *)path };
	worker_fill_pmtime(w, path, &op.pmtime, &op.has_pmtime);
	record_forget(w->rec, path);
	return send_or_batch(w, &op, seq);
}

/* Nothing at path in BACKING: delete it on the server, unless the front end
 * reports deletions itself (keep_missing; its QF_GONE syncs never get here,
 * worker_sync_path deletes them at once): then only note the miss for it
 * (queue.h). */
static enum send_result sync_missing(struct worker *w, const char *path, uint64_t seq)
{
	if (!w->m->keep_missing)
		return send_delete(w, path, seq);
	if (queue_note(w->m->q, QN_MISS, path) < 0)
		mirror_error(w->m, path, "cannot note a missing path: out of memory");
	log_debug("%s: not in the backing folder (moved?): left to the scanner", path);
	return SEND_OK;
}

static enum send_result sync_symlink(struct worker *w, const char *path, const struct stat *st,
				     uint64_t seq)
{
	char target[PATH_MAX_LEN + 1];
	const char *base;
	int pfd = safe_open_parent(w->m->backing_fd, path, 0, &base);
	if (pfd < 0)
		return sync_missing(w, path, seq); /* gone since */
	ssize_t n = readlinkat(pfd, base, target, sizeof(target) - 1);
	close(pfd);
	if (n < 0)
		return errno == ENOENT || errno == EINVAL ? SEND_CHANGED : SEND_LOCAL;
	target[n] = '\0';
	struct proto_op op = { .kind = OP_SYMLINK, .path = (char *)path, .target = target,
			       .mtime = st->st_mtim };
	worker_fill_pmtime(w, path, &op.pmtime, &op.has_pmtime);
	return send_or_batch(w, &op, seq);
}

/* How long a file that is open for writing may stay quiet before it is sent,
 * and how long it may keep changing before it is sent anyway. */
#define QUIET_NS (OFILES_QUIET_MS * 1000LL * 1000)
#define MAXWAIT_NS (5000LL * 1000 * 1000)

static enum send_result sync_file(struct worker *w, const char *path, unsigned flags,
				  const struct stat *st, uint64_t seq)
{
	struct mirror *m = w->m;
	int64_t last_write, dirty_since, now = queue_now();
	int writing = ofiles_begin_upload(&m->ofiles, st->st_dev, st->st_ino, &last_write,
					  &dirty_since);
	if (writing && now - last_write < QUIET_NS &&
	    (dirty_since == 0 || now - dirty_since < MAXWAIT_NS)) {
		snprintf(w->why, sizeof(w->why), "still being written");
		return SEND_CHANGED;
	}
	if (flags == QF_META) {
		struct proto_op op = { .kind = OP_META, .path = (char *)path, .type = 'f',
				       .mode = st->st_mode & 07777, .mtime = st->st_mtim };
		worker_fill_pmtime(w, path, &op.pmtime, &op.has_pmtime);
		enum send_result r = worker_send_op(w, &op, seq, NULL);
		if (r != SEND_NOTFOUND)
			return r;
	}
	int fd = safe_openat(m->backing_fd, path, O_RDONLY | O_NOFOLLOW | O_NOCTTY, 0);
	if (fd < 0) {
		if (fd == -ENOENT || fd == -ELOOP || fd == -ENOTDIR)
			return SEND_CHANGED; /* replaced since the lstat: look again */
		snprintf(w->why, sizeof(w->why), "cannot open in backing folder: %s", strerror(-fd));
		return SEND_LOCAL;
	}
	struct stat fst;
	if (fstat(fd, &fst) < 0 || !S_ISREG(fst.st_mode) || fst.st_ino != st->st_ino) {
		close(fd);
		return SEND_CHANGED;
	}
	struct drange dr[OFILE_RANGES];
	int ndr = ofiles_take_dirty(&m->ofiles, fst.st_dev, fst.st_ino, dr);
	enum send_result r = batch_wants(w, &fst) ?
				     batch_add(w, path, fd, &fst, flags, seq, dr, ndr, now) :
				     transfer_file(w, path, fd, &fst, seq, dr, ndr);
	if (r == SEND_ALONE)
		r = transfer_file(w, path, fd, &fst, seq, dr, ndr);
	if (r == SEND_BATCHED) {
		close(fd); /* the batch finishes the rest when it is sent */
		return r;
	}
	close(fd);
	if (r != SEND_OK)
		ofiles_return_dirty(&m->ofiles, fst.st_dev, fst.st_ino, dr, ndr);
	if (r == SEND_CHANGED && writing)
		ofiles_postpone(&m->ofiles, fst.st_dev, fst.st_ino, queue_now());
	if (r == SEND_OK) {
		ofiles_uploaded(&m->ofiles, fst.st_dev, fst.st_ino, now);
		worker_sync_links(w, path, &fst, flags);
	}
	return r;
}

void worker_sync_links(struct worker *w, const char *path, const struct stat *st, unsigned flags)
{
	struct mirror *m = w->m;
	if (st->st_nlink <= 1 || (flags & QF_NOLINK))
		return;
	/* Every other name of this inode now has new content too. */
	char **others = links_others(m->links, st->st_ino, path);
	for (char **o = others; o && *o; o++)
		log_debug("%s: hard link, syncing %s too", path, *o);
	for (char **o = others; o && *o; o++)
		if (queue_sync_since(m->q, *o, QF_CONTENT | QF_NOLINK, w->since) < 0)
			mirror_error(m, *o, "cannot queue change: out of memory");
	links_strv_free(others);
}

enum send_result worker_sync_path(struct worker *w, const char *path, unsigned flags,
				  const struct stat *st_in, uint64_t seq)
{
	struct stat st;
	/* A vanished path reported by a front end that finds changes late:
	 * what BACKING holds there now is new to that front end, which reports
	 * it after this entry (queue.h, QF_GONE). Uploading it here could put
	 * on the server something that front end never sees, such as a
	 * temporary file renamed away before its next look. */
	if (w->m->keep_missing && (flags & QF_GONE))
		return send_delete(w, path, seq);
	if (st_in) {
		st = *st_in;
	} else {
		int r = safe_lstat(w->m->backing_fd, path, &st);
		if (r == -ENOENT)
			return sync_missing(w, path, seq);
		if (r < 0) {
			snprintf(w->why, sizeof(w->why), "cannot stat in backing folder: %s",
				 strerror(-r));
			return SEND_LOCAL;
		}
	}
	if (S_ISDIR(st.st_mode)) {
		struct proto_op op = { .kind = OP_MKDIR, .path = (char *)path,
				       .mode = st.st_mode & 07777, .mtime = st.st_mtim };
		worker_fill_pmtime(w, path, &op.pmtime, &op.has_pmtime);
		return send_or_batch(w, &op, seq);
	}
	if (S_ISLNK(st.st_mode))
		return sync_symlink(w, path, &st, seq);
	if (S_ISREG(st.st_mode))
		return sync_file(w, path, flags, &st, seq);
	/* fifo, socket, device: works in the mount, never mirrored; make sure
	 * nothing stale sits at that name on the server. */
	pthread_mutex_lock(&w->m->stats_lock);
	w->m->stats.skipped_special++;
	pthread_mutex_unlock(&w->m->stats_lock);
	return send_delete(w, path, seq);
}
