#define _GNU_SOURCE
#include "kio.h"

#include <errno.h>
#include <fcntl.h>
#include <linux/fuse.h>
#include <stdatomic.h>
#include <stddef.h>
#include <string.h>
#include <sys/uio.h>
#include <unistd.h>

#include "fs.h" /* fuse_lowlevel.h with the project's FUSE_USE_VERSION */

_Static_assert(FUSE_HANDLE_KILLPRIV_FLAG == FUSE_HANDLE_KILLPRIV, "kio.h's copy of the flag");

static atomic_uint init_flags;
static atomic_int init_written;

static void (*after_init_fn)(void *arg);
static void *after_init_arg;

void kio_init_flags(uint32_t flags)
{
	atomic_fetch_or(&init_flags, flags);
}

void kio_after_init(void (*fn)(void *arg), void *arg)
{
	after_init_fn = fn;
	after_init_arg = arg;
}

static ssize_t kio_writev(int fd, struct iovec *iov, int count, void *userdata)
{
	(void)userdata;
	/* The first reply of the session is the INIT reply: a header and a
	 * struct fuse_init_out (at least its flags). A notification (unique
	 * 0) that the init callback's threads might send before it is not.
	 * Only that first reply is ever changed, and only if it succeeds. */
	const struct fuse_out_header *h = count == 2 ? iov[0].iov_base : NULL;
	if (!atomic_load(&init_written) && h && iov[0].iov_len == sizeof(*h) && h->unique != 0 &&
	    !atomic_exchange(&init_written, 1) && h->error == 0 &&
	    iov[1].iov_len >= offsetof(struct fuse_init_out, flags) + sizeof(uint32_t) &&
	    iov[1].iov_len <= sizeof(struct fuse_init_out)) {
		struct fuse_init_out out;
		struct iovec v[2] = { iov[0], { &out, iov[1].iov_len } };
		memcpy(&out, iov[1].iov_base, iov[1].iov_len);
		out.flags |= atomic_load(&init_flags);
		ssize_t n = writev(fd, v, 2);
		/* The kernel has applied the reply when writev() returns. */
		if (n >= 0 && after_init_fn) {
			int e = errno;
			after_init_fn(after_init_arg);
			errno = e;
		}
		return n;
	}
	return writev(fd, iov, count);
}

static ssize_t kio_read(int fd, void *buf, size_t len, void *userdata)
{
	(void)userdata;
	return read(fd, buf, len);
}

static ssize_t kio_splice(int fdin, off_t *offin, int fdout, off_t *offout, size_t len,
			  unsigned int flags, void *userdata)
{
	(void)userdata;
	return splice(fdin, offin, fdout, offout, len, flags);
}

int kio_install(struct fuse_session *se)
{
	static const struct fuse_custom_io io = {
		.writev = kio_writev,
		.read = kio_read,
		.splice_receive = kio_splice,
		.splice_send = kio_splice,
	};
	int fd = fuse_session_fd(se);
	return fd < 0 ? -EBADF : fuse_session_custom_io(se, &io, fd);
}
