/*
 * sqlerr: the one mapping from SQLite result codes to negative errno,
 * shared by every module that keeps state in SQLite (the client's queue
 * and record, mirrord's state). Pure, thread-safe.
 */
#ifndef MIRROR_SQLERR_H
#define MIRROR_SQLERR_H

/* 0 for SQLITE_OK, SQLITE_ROW and SQLITE_DONE; otherwise a negative errno
 * (-ENOMEM, -ENOSPC, -EBUSY, -EROFS, -EACCES, -ENOENT, -E2BIG, -EIO). */
int sqlerr_errno(int rc);

#endif
