/*
 * http: the client's connection to mirrord (libcurl easy interface).
 *
 * One struct http per thread: it owns a curl handle, so the TCP connection
 * is kept alive and reused across requests. Every request carries the
 * client id header and, once http_set_auth() gave one, the token
 * (Authorization: Bearer); POST /v1/op also the sequence number. An
 * https:// server's certificate is always verified (against cacert, or
 * the system's CAs), and a 401 is reported as a failure (-EACCES), never
 * as an answer: a client with a wrong token keeps its changes and retries,
 * it does not drop them as refused. Responses are
 * collected into a capped buf (HTTP_RESP_MAX) or, for the manifest, handed
 * out line by line (each line capped at PROTO_MANIFEST_LINE_MAX).
 *
 * http_errno_for_curl() is the one mapping from curl errors to errno.
 * Not thread-safe per handle; separate handles are independent.
 */
#ifndef MIRRORFS_HTTP_H
#define MIRRORFS_HTTP_H

#include <stddef.h>
#include <stdint.h>

#include "buf.h"

#define HTTP_RESP_MAX (4u * 1024 * 1024)

struct http {
	void *curl;            /* CURL *, owned */
	char *base;            /* owned: "http://host:port" without trailing / */
	void *headers;         /* struct curl_slist *, owned */
	char *cacert;          /* owned: PEM CA bundle file, NULL: the system's */
	char err[256];         /* last transport error text */
	long timeout_s;
	const char *encoding;  /* borrowed: Content-Encoding of the next
				* request's body, cleared by it; NULL: none */
	const char *extra;     /* borrowed: one more header line ("Name: value")
				* for the next request, cleared by it */
};

/* Global libcurl setup; call once from main before threads. 0 or -EIO. */
int http_global_init(void);

/* base_url is copied. client_id: 32 hex chars. Returns 0, -EINVAL (bad URL:
 * not http:// or https:// with a host), -ENOMEM. */
__attribute__((warn_unused_result))
int http_init(struct http *h, const char *base_url, const char *client_id);
void http_release(struct http *h);

/* Send token (NULL: none) with every request, and verify an https
 * server's certificate against the CA file cacert (NULL: the system's CAs;
 * an absolute path, as curl opens it at every connection). Both are
 * copied. Returns 0 or -ENOMEM (h is unchanged then). */
__attribute__((warn_unused_result))
int http_set_auth(struct http *h, const char *token, const char *cacert);

/* Check that url looks like http(s)://host[:port][/]. 0 or -EINVAL. */
int http_url_check(const char *url);

/* Perform a request. target: "/v1/..." (query already escaped). body may
 * be NULL; no Content-Type is sent (each route of mirrord has one body
 * format, and the header costs up to 40 bytes a request). seq: sent as
 * X-Mirror-Seq when non-zero. The response body goes
 * to resp (reset first, capped). Returns 0 with *status set when the server
 * answered (any status but 401), or a negative errno for a transport
 * failure (-ECONNREFUSED, -ETIMEDOUT, -ECONNRESET, -EHOSTUNREACH, -EMSGSIZE
 * for an over-long answer, -EKEYREJECTED for a server certificate that
 * cannot be verified, -EPROTO for another TLS failure, -EIO) or a refused
 * token (-EACCES: 401); h->err then says what happened. */
__attribute__((warn_unused_result))
int http_request(struct http *h, const char *method, const char *target,
		 const void *body, size_t len, uint64_t seq, struct buf *resp, long *status);

/* GET target and call line_cb for every '\n'-terminated line of a 200
 * answer (line without the '\n', NUL-terminated, borrowed). A callback
 * returning non-zero stops the transfer with that value. Returns 0, the
 * callback's value, -EMSGSIZE for a line over the cap, a transport errno
 * or -EACCES as http_request(), or -EPROTO when the status is not 200
 * (*status tells). */
__attribute__((warn_unused_result))
int http_get_lines(struct http *h, const char *target,
		   int (*line_cb)(void *arg, char *line, size_t len), void *arg,
		   long *status);

/* 1 if the next request will go over the connection the last one used:
 * curl still holds it and the server has not closed it (an idle timeout,
 * an answer with "Connection: close"). 0 if a new connection will be
 * opened. State that the server keeps per connection (a compression
 * stream, docs/PROTOCOL.md) is gone in that case. A server that closes
 * right after this check is not seen: the caller must still cope. */
int http_conn_kept(struct http *h);

/* URL-escape s into a new string (caller frees with free()), or NULL. */
char *http_escape(struct http *h, const char *s);

int http_errno_for_curl(int curl_code);

#endif
