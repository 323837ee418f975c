/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kdkedu_ioctl.h - ioctl numbers of the kdkedu driver (QEMU's edu device).
 *
 * Shared by the driver and by user-space programs:
 *
 *	#include "kdkedu_ioctl.h"
 *	__u32 n = 12;
 *	ioctl(fd, KDKEDU_IOC_FACTORIAL, &n);	// n is now 479001600
 *
 * Every command takes a pointer to a __u32.  read(2) and write(2) move
 * bytes between user space and the device's 4 KiB buffer by DMA, at the
 * file position, up to KDKEDU_BUF_SIZE.
 */
#ifndef KDKEDU_IOCTL_H
#define KDKEDU_IOCTL_H

#include <linux/ioctl.h>
#include <linux/types.h>

/* the type byte of kdk's hardware drivers; numbers 1-3 here */
#define KDKEDU_IOC_MAGIC	'k'

/* in: n; out: n! as the device computes it (32 bits, wrapping) */
#define KDKEDU_IOC_FACTORIAL	_IOWR(KDKEDU_IOC_MAGIC, 1, __u32)
/* in: a value; out: what the liveness register reads back (~value) */
#define KDKEDU_IOC_LIVENESS	_IOWR(KDKEDU_IOC_MAGIC, 2, __u32)
/* wait for the next interrupt the device raises; out: its status bits */
#define KDKEDU_IOC_WAIT_IRQ	_IOR(KDKEDU_IOC_MAGIC, 3, __u32)

/*
 * read(2)/write(2) reach this many bytes of the device's 4 KiB DMA buffer:
 * all but its last byte.  QEMU up to 8.2.0 (Debian 12 has 7.2) aborts the
 * whole VM on a DMA that ends at the buffer's end (an off-by-one in edu.c,
 * fixed by "edu: fix DMA range upper bound check", January 2024).
 */
#define KDKEDU_BUF_SIZE		4095

#endif /* KDKEDU_IOCTL_H */
