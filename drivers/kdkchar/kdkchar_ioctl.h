/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * kdkchar_ioctl.h - ioctl numbers of the kdkchar driver.
 *
 * Shared by the driver and by user-space programs:
 *
 *	#include "kdkchar_ioctl.h"
 *	int n;
 *	ioctl(fd, KDKCHAR_IOC_GET_SIZE, &n);
 *
 * Every command that takes an argument takes a pointer to an int.
 */
#ifndef KDKCHAR_IOCTL_H
#define KDKCHAR_IOCTL_H

#include <linux/ioctl.h>

/* 'Y': not listed in Documentation/userspace-api/ioctl/ioctl-number.rst */
#define KDKCHAR_IOC_MAGIC	'Y'

/* bytes currently stored in the buffer */
#define KDKCHAR_IOC_GET_SIZE		_IOR(KDKCHAR_IOC_MAGIC, 1, int)
/* size of the buffer in bytes */
#define KDKCHAR_IOC_GET_CAPACITY	_IOR(KDKCHAR_IOC_MAGIC, 2, int)
/* throw away everything stored */
#define KDKCHAR_IOC_CLEAR		_IO(KDKCHAR_IOC_MAGIC, 3)
/* new capacity in bytes, 1..KDKCHAR_MAX_CAPACITY; keeps the data */
#define KDKCHAR_IOC_RESIZE		_IOW(KDKCHAR_IOC_MAGIC, 4, int)

#define KDKCHAR_MAX_CAPACITY	(1024 * 1024)

#endif /* KDKCHAR_IOCTL_H */
