/*
 * ra: the mount reads ahead as far as BACKING's disk does.
 *
 * The kernel gives a FUSE mount a readahead window of 128 KiB and lets
 * the INIT reply only lower it; the folder under the mount is often on a
 * disk that reads ahead much further (a virtio disk: 8 MiB). A cold
 * sequential read through the mount then asks BACKING for 128 KiB at a
 * time. ra_match() raises the mount's window (its bdi's read_ahead_kb in
 * sysfs) to that of BACKING's disk, when that is larger and the process
 * may write sysfs (root). Measured: cold fio read of 1 GiB through the
 * mount, the window switched between reads, four rounds: 128 KiB
 * 804-3430 MB/s, 8 MiB (the disk's) 2711-3976 (README).
 *
 * Call once, after the kernel has taken the INIT reply (kio_after_init():
 * the reply would lower the window again).
 */
#ifndef MIRRORFS_RA_H
#define MIRRORFS_RA_H

/* Match the readahead of the FUSE mount at mountpoint (the newest mount
 * there, as /proc/self/mountinfo lists it) to that of the disk holding
 * backing. Returns 1 if raised, 0 if left as it is (not larger, no disk:
 * tmpfs, a network filesystem), or a negative errno (-EACCES: not root). */
int ra_match(const char *mountpoint, const char *backing);

/* For tests: the device ("MAJ:MIN") of the newest mount at mountpoint
 * whose type starts with "fuse", from the mountinfo text at path. 0, or
 * -ENOENT. */
int ra_mount_dev(const char *mountinfo, const char *mountpoint, unsigned *maj, unsigned *min);

#endif
