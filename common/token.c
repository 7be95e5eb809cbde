#define _GNU_SOURCE
#include "token.h"

#include <errno.h>
#include <fcntl.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <sodium.h>

/* A token file is the token and a line end: anything longer is not one. */
#define TOKEN_FILE_MAX (TOKEN_MAX_LEN + 2)

_Static_assert(TOKEN_NEW_LEN >= TOKEN_MIN_LEN && TOKEN_NEW_LEN <= TOKEN_MAX_LEN,
	       "a new token must be a valid token");

int token_parse(const char *text, size_t len, size_t *tok_len)
{
	size_t n = len;
	if (n > 0 && text[n - 1] == '\n') {
		n--;
		if (n > 0 && text[n - 1] == '\r')
			n--;
	}
	if (n < TOKEN_MIN_LEN || n > TOKEN_MAX_LEN)
		return -EINVAL;
	for (size_t i = 0; i < n; i++)
		if ((unsigned char)text[i] <= ' ' || (unsigned char)text[i] >= 0x7f)
			return -EINVAL; /* also any '\n' or '\r' inside: one line only */
	*tok_len = n;
	return 0;
}

int token_read(const char *path, char out[TOKEN_MAX_LEN + 1], int *loose)
{
	char text[TOKEN_FILE_MAX + 1];
	struct stat st;
	size_t have = 0, n;
	int r = 0;

	/* O_NONBLOCK: a fifo put in the token file's place must not hang us. */
	int fd = open(path, O_RDONLY | O_CLOEXEC | O_NOCTTY | O_NONBLOCK);
	if (fd < 0)
		return -errno;
	if (fstat(fd, &st) < 0) {
		r = -errno;
		goto out;
	}
	if (!S_ISREG(st.st_mode)) {
		r = -EINVAL;
		goto out;
	}
	*loose = (st.st_mode & 077) != 0;
	while (have < sizeof(text)) {
		ssize_t k = read(fd, text + have, sizeof(text) - have);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			goto out;
		}
		if (k == 0)
			break;
		have += (size_t)k;
	}
	if (have > TOKEN_FILE_MAX) {
		r = -EFBIG;
		goto out;
	}
	if ((r = token_parse(text, have, &n)) < 0)
		goto out;
	memcpy(out, text, n);
	out[n] = '\0';
out:
	sodium_memzero(text, sizeof(text));
	close(fd);
	return r;
}

int token_create(const char *path, char out[TOKEN_MAX_LEN + 1])
{
	unsigned char rnd[TOKEN_NEW_LEN / 2];
	char line[TOKEN_NEW_LEN + 2];
	int r = 0;

	int fd = open(path, O_WRONLY | O_CREAT | O_EXCL | O_NOFOLLOW | O_CLOEXEC, 0600);
	if (fd < 0)
		return -errno;
	randombytes_buf(rnd, sizeof(rnd));
	sodium_bin2hex(line, sizeof(line), rnd, sizeof(rnd));
	line[TOKEN_NEW_LEN] = '\n';
	/* Whatever the umask: the token is for its owner only. */
	if (fchmod(fd, 0600) < 0) {
		r = -errno;
		goto fail;
	}
	for (size_t done = 0; done < TOKEN_NEW_LEN + 1;) {
		ssize_t k = write(fd, line + done, TOKEN_NEW_LEN + 1 - done);
		if (k < 0 && errno == EINTR)
			continue;
		if (k < 0) {
			r = -errno;
			goto fail;
		}
		done += (size_t)k;
	}
	if (fsync(fd) < 0) {
		r = -errno;
		goto fail;
	}
	if (close(fd) < 0) {
		fd = -1;
		r = -errno;
		goto fail;
	}
	memcpy(out, line, TOKEN_NEW_LEN);
	out[TOKEN_NEW_LEN] = '\0';
	sodium_memzero(line, sizeof(line));
	sodium_memzero(rnd, sizeof(rnd));
	return 0;
fail:
	if (fd >= 0)
		close(fd);
	unlink(path);
	sodium_memzero(line, sizeof(line));
	sodium_memzero(rnd, sizeof(rnd));
	return r;
}
