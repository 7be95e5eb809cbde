#define _GNU_SOURCE
#include "http.h"

#include <curl/curl.h>
#include <errno.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "proto.h"

int http_global_init(void)
{
	return curl_global_init(CURL_GLOBAL_DEFAULT) == CURLE_OK ? 0 : -EIO;
}

int http_errno_for_curl(int code)
{
	switch (code) {
	case CURLE_OK:
		return 0;
	case CURLE_COULDNT_CONNECT:
		return -ECONNREFUSED;
	case CURLE_OPERATION_TIMEDOUT:
		return -ETIMEDOUT;
	case CURLE_COULDNT_RESOLVE_HOST:
	case CURLE_COULDNT_RESOLVE_PROXY:
		return -EHOSTUNREACH;
	case CURLE_SEND_ERROR:
	case CURLE_RECV_ERROR:
	case CURLE_GOT_NOTHING:
	case CURLE_PARTIAL_FILE:
		return -ECONNRESET;
	case CURLE_WRITE_ERROR:
		return -EMSGSIZE; /* our callbacks refuse over-cap bodies */
	case CURLE_PEER_FAILED_VERIFICATION: /* also a bad certificate since curl 7.62 */
	case CURLE_SSL_CACERT_BADFILE:
	case CURLE_SSL_ISSUER_ERROR:
	case CURLE_SSL_PINNEDPUBKEYNOTMATCH:
		return -EKEYREJECTED;
	case CURLE_SSL_CONNECT_ERROR:
	case CURLE_SSL_CERTPROBLEM:
	case CURLE_SSL_CIPHER:
	case CURLE_USE_SSL_FAILED:
		return -EPROTO;
	case CURLE_ABORTED_BY_CALLBACK:
		return -ECANCELED;
	default:
		return -EIO;
	}
}

int http_url_check(const char *url)
{
	const char *p;
	if (strncmp(url, "http://", 7) == 0)
		p = url + 7;
	else if (strncmp(url, "https://", 8) == 0)
		p = url + 8;
	else
		return -EINVAL;
	/* host: a name, an IPv4 address or a bracketed IPv6 address */
	const char *host = p;
	if (*p == '[') {
		p = strchr(p, ']');
		if (!p || p == host + 1)
			return -EINVAL;
		p++;
	} else {
		while (*p && *p != ':' && *p != '/')
			p++;
		if (p == host)
			return -EINVAL;
	}
	for (const char *c = host; c < p; c++)
		if ((unsigned char)*c <= ' ' || *c == '@' || *c == '?' || *c == '#')
			return -EINVAL;
	if (*p == ':') {
		long port = 0;
		const char *d = ++p;
		while (*p >= '0' && *p <= '9' && port <= 65535)
			port = port * 10 + (*p++ - '0');
		if (p == d || port < 1 || port > 65535)
			return -EINVAL;
	}
	/* nothing but an optional trailing '/' */
	if (*p == '/')
		p++;
	return *p == '\0' ? 0 : -EINVAL;
}

int http_init(struct http *h, const char *base_url, const char *client_id)
{
	char hdr[96];
	memset(h, 0, sizeof(*h));
	h->timeout_s = 300;
	if (http_url_check(base_url) < 0)
		return -EINVAL;
	h->base = strdup(base_url);
	if (!h->base)
		goto nomem;
	size_t n = strlen(h->base);
	while (n > 0 && h->base[n - 1] == '/')
		h->base[--n] = '\0';
	h->curl = curl_easy_init();
	if (!h->curl)
		goto nomem;
	snprintf(hdr, sizeof(hdr), "X-Mirror-Client: %s", client_id);
	struct curl_slist *l = curl_slist_append(NULL, hdr);
	if (!l)
		goto nomem;
	/* No 100-continue round trip; no Accept header (bytes on every
	 * request, and mirrord answers JSON or lines anyway). */
	struct curl_slist *l2 = curl_slist_append(l, "Expect:");
	struct curl_slist *l3 = l2 ? curl_slist_append(l2, "Accept:") : NULL;
	if (!l3) {
		curl_slist_free_all(l);
		goto nomem;
	}
	h->headers = l3;
	return 0;
nomem:
	http_release(h);
	return -ENOMEM;
}

void http_release(struct http *h)
{
	if (!h)
		return;
	if (h->curl)
		curl_easy_cleanup(h->curl);
	/* The token sits in the header list: wipe it before freeing. */
	for (struct curl_slist *i = h->headers; i; i = i->next)
		sodium_memzero(i->data, strlen(i->data));
	curl_slist_free_all(h->headers);
	free(h->base);
	free(h->cacert);
	memset(h, 0, sizeof(*h));
}

int http_set_auth(struct http *h, const char *token, const char *cacert)
{
	char *ca = NULL;
	if (cacert && !(ca = strdup(cacert)))
		return -ENOMEM;
	if (token) {
		size_t len = strlen(token) + 32;
		char *hdr = malloc(len);
		if (!hdr) {
			free(ca);
			return -ENOMEM;
		}
		snprintf(hdr, len, "Authorization: Bearer %s", token);
		struct curl_slist *l = curl_slist_append(h->headers, hdr);
		sodium_memzero(hdr, len);
		free(hdr);
		if (!l) {
			free(ca);
			return -ENOMEM;
		}
		h->headers = l;
	}
	free(h->cacert);
	h->cacert = ca;
	return 0;
}

/* The server refused our token: a failure of ours, not an answer. */
static int refused(struct http *h)
{
	snprintf(h->err, sizeof(h->err),
		 "mirrord refused the token (401): check --token-file against the server's");
	return -EACCES;
}

char *http_escape(struct http *h, const char *s)
{
	char *e = curl_easy_escape(h->curl, s, (int)strlen(s));
	if (!e)
		return NULL;
	char *r = strdup(e);
	curl_free(e);
	return r;
}

static size_t to_buf(char *ptr, size_t size, size_t n, void *arg)
{
	struct buf *b = arg;
	if (buf_append(b, ptr, size * n) < 0)
		return 0; /* curl fails the transfer with CURLE_WRITE_ERROR */
	return size * n;
}

/* curl copies a body into a buffer of this size and sends it from there:
 * with its default of 64 KiB, a 1 MiB upload body took 16 sends. */
#define HTTP_UPLOAD_BUFFER (512L * 1024)

/* Common options for one request. */
static int setup(struct http *h, const char *method, const char *target,
		 struct curl_slist **extra, uint64_t seq)
{
	CURL *c = h->curl;
	char url[8192];
	if ((size_t)snprintf(url, sizeof(url), "%s%s", h->base, target) >= sizeof(url))
		return -ENAMETOOLONG;
	curl_easy_reset(c);
	curl_easy_setopt(c, CURLOPT_URL, url);
	curl_easy_setopt(c, CURLOPT_NOSIGNAL, 1L);
	curl_easy_setopt(c, CURLOPT_CONNECTTIMEOUT, 10L);
	curl_easy_setopt(c, CURLOPT_TIMEOUT, h->timeout_s);
	curl_easy_setopt(c, CURLOPT_TCP_NODELAY, 1L);
	curl_easy_setopt(c, CURLOPT_TCP_KEEPALIVE, 1L);
	curl_easy_setopt(c, CURLOPT_UPLOAD_BUFFERSIZE, HTTP_UPLOAD_BUFFER);
	curl_easy_setopt(c, CURLOPT_ERRORBUFFER, h->err);
	curl_easy_setopt(c, CURLOPT_PROTOCOLS_STR, "http,https");
	/* curl's defaults, stated: an https server must prove who it is. */
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYPEER, 1L);
	curl_easy_setopt(c, CURLOPT_SSL_VERIFYHOST, 2L);
	if (h->cacert)
		curl_easy_setopt(c, CURLOPT_CAINFO, h->cacert);
	h->err[0] = '\0';
	struct curl_slist *hl = h->headers;
	*extra = NULL;
	if (seq) {
		char s[64];
		snprintf(s, sizeof(s), "X-Mirror-Seq: %llu", (unsigned long long)seq);
		/* Copy the shared list so the per-request header is not kept. */
		for (struct curl_slist *i = h->headers; i; i = i->next)
			*extra = curl_slist_append(*extra, i->data);
		*extra = curl_slist_append(*extra, s);
		if (!*extra)
			return -ENOMEM;
		hl = *extra;
	}
	if (strcmp(method, "GET") == 0) {
		curl_easy_setopt(c, CURLOPT_HTTPGET, 1L);
	} else if (strcmp(method, "POST") != 0) {
		curl_easy_setopt(c, CURLOPT_CUSTOMREQUEST, method);
	}
	curl_easy_setopt(c, CURLOPT_HTTPHEADER, hl);
	return 0;
}

int http_request(struct http *h, const char *method, const char *target,
		 const void *body, size_t len, uint64_t seq, struct buf *resp, long *status)
{
	struct curl_slist *extra = NULL, *hdrs = NULL;
	char ct[128];
	const char *encoding = h->encoding, *extra_hdr = h->extra;
	h->encoding = h->extra = NULL; /* for this request only */
	int r = setup(h, method, target, &extra, seq);
	if (r < 0)
		goto out;
	CURL *c = h->curl;
	if (body || strcmp(method, "POST") == 0) {
		curl_easy_setopt(c, CURLOPT_POST, 1L);
		curl_easy_setopt(c, CURLOPT_POSTFIELDS, body ? body : "");
		curl_easy_setopt(c, CURLOPT_POSTFIELDSIZE_LARGE, (curl_off_t)len);
		/* No Content-Type (http.h): "Content-Type:" keeps curl from
		 * adding a form type of its own. */
		for (struct curl_slist *i = extra ? extra : h->headers; i; i = i->next)
			hdrs = curl_slist_append(hdrs, i->data);
		hdrs = curl_slist_append(hdrs, "Content-Type:");
		if (hdrs && encoding) {
			snprintf(ct, sizeof(ct), "Content-Encoding: %s", encoding);
			hdrs = curl_slist_append(hdrs, ct);
		}
		if (hdrs && extra_hdr)
			hdrs = curl_slist_append(hdrs, extra_hdr);
		if (!hdrs) {
			r = -ENOMEM;
			goto out;
		}
		curl_easy_setopt(c, CURLOPT_HTTPHEADER, hdrs);
	}
	buf_reset(resp);
	curl_easy_setopt(c, CURLOPT_WRITEFUNCTION, to_buf);
	curl_easy_setopt(c, CURLOPT_WRITEDATA, resp);
	CURLcode cc = curl_easy_perform(c);
	if (cc != CURLE_OK) {
		if (!h->err[0])
			snprintf(h->err, sizeof(h->err), "%s", curl_easy_strerror(cc));
		r = http_errno_for_curl((int)cc);
		goto out;
	}
	curl_easy_getinfo(c, CURLINFO_RESPONSE_CODE, status);
	r = *status == 401 ? refused(h) : 0;
out:
	curl_slist_free_all(hdrs);
	curl_slist_free_all(extra);
	return r;
}

int http_conn_kept(struct http *h)
{
	curl_socket_t fd = CURL_SOCKET_BAD;
	if (curl_easy_getinfo(h->curl, CURLINFO_ACTIVESOCKET, &fd) != CURLE_OK ||
	    fd == CURL_SOCKET_BAD)
		return 0;
	struct pollfd p = { .fd = fd, .events = POLLIN | POLLRDHUP };
	int n = poll(&p, 1, 0);
	if (n == 0)
		return 1; /* nothing to read: open and idle, as it should be */
	/* Readable between requests: the peer's FIN, or bytes nobody asked
	 * for, after which curl does not reuse the connection either. */
	return 0;
}

struct lines {
	struct buf line;
	int (*cb)(void *, char *, size_t);
	void *arg;
	int result;
	CURL *curl;
};

static size_t to_lines(char *ptr, size_t size, size_t n, void *arg)
{
	struct lines *ls = arg;
	size_t total = size * n;
	long status = 0;
	curl_easy_getinfo(ls->curl, CURLINFO_RESPONSE_CODE, &status);
	if (status != 200)
		return total; /* the error body is ignored; the status tells */
	for (size_t i = 0; i < total; i++) {
		if (ptr[i] != '\n') {
			/* Cheap per byte: buf_append of 1 byte; lines are short. */
			size_t j = i;
			while (j < total && ptr[j] != '\n')
				j++;
			if (buf_append(&ls->line, ptr + i, j - i) < 0) {
				ls->result = -EMSGSIZE;
				return 0;
			}
			i = j - 1;
			continue;
		}
		int r = ls->cb(ls->arg, ls->line.data ? ls->line.data : (char *)"", ls->line.len);
		buf_reset(&ls->line);
		if (r != 0) {
			ls->result = r;
			return 0;
		}
	}
	return total;
}

int http_get_lines(struct http *h, const char *target,
		   int (*line_cb)(void *arg, char *line, size_t len), void *arg,
		   long *status)
{
	struct curl_slist *extra = NULL;
	struct lines ls = { .cb = line_cb, .arg = arg, .curl = h->curl };
	buf_init(&ls.line, PROTO_MANIFEST_LINE_MAX);
	int r = setup(h, "GET", target, &extra, 0);
	if (r < 0)
		goto out;
	curl_easy_setopt(h->curl, CURLOPT_WRITEFUNCTION, to_lines);
	curl_easy_setopt(h->curl, CURLOPT_WRITEDATA, &ls);
	CURLcode cc = curl_easy_perform(h->curl);
	*status = 0;
	curl_easy_getinfo(h->curl, CURLINFO_RESPONSE_CODE, status);
	if (ls.result) {
		r = ls.result;
		goto out;
	}
	if (cc != CURLE_OK) {
		if (!h->err[0])
			snprintf(h->err, sizeof(h->err), "%s", curl_easy_strerror(cc));
		r = http_errno_for_curl((int)cc);
		goto out;
	}
	if (*status == 401) {
		r = refused(h);
		goto out;
	}
	if (*status != 200) {
		r = -EPROTO;
		goto out;
	}
	if (ls.line.len > 0) /* a last line without '\n' */
		r = line_cb(arg, ls.line.data, ls.line.len);
out:
	buf_release(&ls.line);
	curl_slist_free_all(extra);
	return r;
}
