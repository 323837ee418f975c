// SPDX-License-Identifier: GPL-2.0
/*
 * kdkchar - a scull-like character driver: N devices, each a FIFO byte
 * ring buffer.
 *
 * It shows:
 *  - alloc_chrdev_region() for a dynamic major and nr_devs minors,
 *    cdev_init()/cdev_add() per minor, and class_create() +
 *    device_create() so that devtmpfs makes /dev/kdkchar0..N-1 by itself
 *    (with mode 0666, chosen by the class' devnode callback);
 *  - error unwinding with goto, in the reverse order of the setup;
 *  - a mutex protecting each ring buffer (its logic in kdkchar_ring.h,
 *    tested by the KUnit suite of kdkchar_kunit.c), and two wait queues: a read
 *    sleeps while the buffer is empty, a write while it is full, each
 *    side waking the other after it made progress; a signal ends the
 *    sleep with -ERESTARTSYS, O_NONBLOCK gives -EAGAIN instead of
 *    sleeping;
 *  - .poll reporting EPOLLIN/EPOLLRDNORM and EPOLLOUT/EPOLLWRNORM;
 *  - unlocked_ioctl with command numbers from _IO/_IOR/_IOW in a header
 *    shared with user space, get_user()/put_user(), -ENOTTY for unknown
 *    commands and -EFAULT for bad user pointers;
 *  - .owner = THIS_MODULE: while a device is open the module is in use
 *    and rmmod refuses to unload it.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/cdev.h>
#include <linux/device.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/mm.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/poll.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/version.h>
#include <linux/wait.h>

#include "kdkchar_ioctl.h"
#include "kdkchar_ring.h"

#define KDKCHAR_NAME		"kdkchar"
#define KDKCHAR_MAX_DEVS	64

static unsigned int nr_devs = 4;
module_param(nr_devs, uint, 0444);
MODULE_PARM_DESC(nr_devs, "Number of devices, 1..64 (default 4)");

static unsigned int bufsize = 4096;
module_param(bufsize, uint, 0444);
MODULE_PARM_DESC(bufsize, "Initial buffer size in bytes, 1..1048576 (default 4096)");

struct kdkchar_dev {
	struct mutex lock;		/* protects ring */
	struct kdkchar_ring ring;
	wait_queue_head_t readq;	/* readers waiting for data */
	wait_queue_head_t writeq;	/* writers waiting for room */
	struct cdev cdev;
	struct device *dev;
	dev_t devt;
};

static dev_t kdkchar_devt;		/* first major:minor */
static struct class *kdkchar_class;
static struct kdkchar_dev *kdkchar_devs;

/* Lockless peeks for the wait conditions; rechecked under the lock. */
static bool kdkchar_has_data(struct kdkchar_dev *d)
{
	return READ_ONCE(d->ring.len) != 0;
}

static bool kdkchar_has_room(struct kdkchar_dev *d)
{
	return READ_ONCE(d->ring.len) < READ_ONCE(d->ring.cap);
}

static int kdkchar_open(struct inode *inode, struct file *file)
{
	struct kdkchar_dev *d = container_of(inode->i_cdev,
					     struct kdkchar_dev, cdev);

	file->private_data = d;
	/* a FIFO: no file position, lseek/pread/pwrite give -ESPIPE */
	return stream_open(inode, file);
}

static ssize_t kdkchar_read(struct file *file, char __user *ubuf,
			    size_t count, loff_t *ppos)
{
	struct kdkchar_dev *d = file->private_data;
	struct kdkchar_ring *r = &d->ring;
	size_t n, first;
	ssize_t ret;

	if (count == 0)
		return 0;

	if (mutex_lock_interruptible(&d->lock))
		return -ERESTARTSYS;
	while (r->len == 0) {
		mutex_unlock(&d->lock);
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		if (wait_event_interruptible(d->readq, kdkchar_has_data(d)))
			return -ERESTARTSYS;
		/* another reader may have been faster: loop and recheck */
		if (mutex_lock_interruptible(&d->lock))
			return -ERESTARTSYS;
	}

	n = kdkchar_ring_read_span(r, count, &first);
	if (copy_to_user(ubuf, r->buf + r->head, first) ||
	    copy_to_user(ubuf + first, r->buf, n - first)) {
		ret = -EFAULT;			/* nothing is consumed */
		goto out;
	}
	kdkchar_ring_consume(r, n);
	ret = n;
	wake_up_interruptible(&d->writeq);
out:
	mutex_unlock(&d->lock);
	return ret;
}

static ssize_t kdkchar_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	struct kdkchar_dev *d = file->private_data;
	struct kdkchar_ring *r = &d->ring;
	size_t n, first, tail;
	ssize_t ret;

	if (count == 0)
		return 0;

	if (mutex_lock_interruptible(&d->lock))
		return -ERESTARTSYS;
	while (r->len == r->cap) {
		mutex_unlock(&d->lock);
		if (file->f_flags & O_NONBLOCK)
			return -EAGAIN;
		if (wait_event_interruptible(d->writeq, kdkchar_has_room(d)))
			return -ERESTARTSYS;
		if (mutex_lock_interruptible(&d->lock))
			return -ERESTARTSYS;
	}

	/* store what fits; the caller writes the rest in a later call */
	n = kdkchar_ring_write_span(r, count, &tail, &first);
	if (copy_from_user(r->buf + tail, ubuf, first) ||
	    copy_from_user(r->buf, ubuf + first, n - first)) {
		ret = -EFAULT;			/* nothing is stored */
		goto out;
	}
	kdkchar_ring_commit(r, n);
	ret = n;
	wake_up_interruptible(&d->readq);
out:
	mutex_unlock(&d->lock);
	return ret;
}

static __poll_t kdkchar_poll(struct file *file, poll_table *wait)
{
	struct kdkchar_dev *d = file->private_data;
	__poll_t mask = 0;

	poll_wait(file, &d->readq, wait);
	poll_wait(file, &d->writeq, wait);

	mutex_lock(&d->lock);
	if (d->ring.len)
		mask |= EPOLLIN | EPOLLRDNORM;
	if (d->ring.len < d->ring.cap)
		mask |= EPOLLOUT | EPOLLWRNORM;
	mutex_unlock(&d->lock);

	return mask;
}

/* Replaces the buffer by one of @newcap bytes, keeping the data. */
static int kdkchar_resize(struct kdkchar_dev *d, int newcap)
{
	char *nbuf, *old;

	if (newcap < 1 || newcap > KDKCHAR_MAX_CAPACITY)
		return -EINVAL;

	/* allocate before locking: the lock is held as briefly as can be */
	nbuf = kvmalloc(newcap, GFP_KERNEL);
	if (!nbuf)
		return -ENOMEM;

	if (mutex_lock_interruptible(&d->lock)) {
		kvfree(nbuf);
		return -ERESTARTSYS;
	}
	if (d->ring.len > (size_t)newcap) {
		mutex_unlock(&d->lock);
		kvfree(nbuf);
		return -EBUSY;		/* the data would not fit */
	}
	old = kdkchar_ring_replace(&d->ring, nbuf, newcap);
	wake_up_interruptible(&d->writeq);	/* there may be more room */
	mutex_unlock(&d->lock);

	kvfree(old);
	return 0;
}

static long kdkchar_ioctl(struct file *file, unsigned int cmd,
			  unsigned long arg)
{
	struct kdkchar_dev *d = file->private_data;
	int __user *uarg = (int __user *)arg;
	int val;

	if (_IOC_TYPE(cmd) != KDKCHAR_IOC_MAGIC)
		return -ENOTTY;

	switch (cmd) {
	case KDKCHAR_IOC_GET_SIZE:
		mutex_lock(&d->lock);
		val = d->ring.len;
		mutex_unlock(&d->lock);
		return put_user(val, uarg);	/* 0 or -EFAULT */

	case KDKCHAR_IOC_GET_CAPACITY:
		mutex_lock(&d->lock);
		val = d->ring.cap;
		mutex_unlock(&d->lock);
		return put_user(val, uarg);

	case KDKCHAR_IOC_CLEAR:
		mutex_lock(&d->lock);
		kdkchar_ring_clear(&d->ring);
		wake_up_interruptible(&d->writeq);
		mutex_unlock(&d->lock);
		return 0;

	case KDKCHAR_IOC_RESIZE:
		if (get_user(val, uarg))
			return -EFAULT;
		return kdkchar_resize(d, val);

	default:
		return -ENOTTY;
	}
}

static const struct file_operations kdkchar_fops = {
	.owner		= THIS_MODULE,
	.open		= kdkchar_open,
	.read		= kdkchar_read,
	.write		= kdkchar_write,
	.poll		= kdkchar_poll,
	.unlocked_ioctl	= kdkchar_ioctl,
	/* every argument is a pointer: the generic compat handler works */
	.compat_ioctl	= compat_ptr_ioctl,
};

/* Lets devtmpfs create the nodes as rw-rw-rw- instead of rw------- */
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
static char *kdkchar_devnode(const struct device *dev, umode_t *mode)
#else
static char *kdkchar_devnode(struct device *dev, umode_t *mode)
#endif
{
	if (mode)
		*mode = 0666;
	return NULL;	/* NULL: the default name, /dev/<device name> */
}

static int kdkchar_setup_dev(struct kdkchar_dev *d, unsigned int minor)
{
	int ret;

	mutex_init(&d->lock);
	init_waitqueue_head(&d->readq);
	init_waitqueue_head(&d->writeq);
	d->devt = MKDEV(MAJOR(kdkchar_devt), MINOR(kdkchar_devt) + minor);
	d->ring.cap = bufsize;
	d->ring.buf = kvmalloc(d->ring.cap, GFP_KERNEL);
	if (!d->ring.buf)
		return -ENOMEM;

	cdev_init(&d->cdev, &kdkchar_fops);
	d->cdev.owner = THIS_MODULE;
	/* from here on, the device can be opened */
	ret = cdev_add(&d->cdev, d->devt, 1);
	if (ret)
		goto err_free;

	d->dev = device_create(kdkchar_class, NULL, d->devt, NULL,
			       KDKCHAR_NAME "%u", minor);
	if (IS_ERR(d->dev)) {
		ret = PTR_ERR(d->dev);
		goto err_cdev;
	}
	return 0;

err_cdev:
	cdev_del(&d->cdev);
err_free:
	kvfree(d->ring.buf);
	return ret;
}

static void kdkchar_teardown_dev(struct kdkchar_dev *d)
{
	device_destroy(kdkchar_class, d->devt);
	cdev_del(&d->cdev);
	kvfree(d->ring.buf);
}

static int __init kdkchar_init(void)
{
	unsigned int i;
	int ret;

	if (nr_devs < 1 || nr_devs > KDKCHAR_MAX_DEVS) {
		pr_err("nr_devs=%u out of range 1..%d\n", nr_devs,
		       KDKCHAR_MAX_DEVS);
		return -EINVAL;
	}
	if (bufsize < 1 || bufsize > KDKCHAR_MAX_CAPACITY) {
		pr_err("bufsize=%u out of range 1..%d\n", bufsize,
		       KDKCHAR_MAX_CAPACITY);
		return -EINVAL;
	}

	ret = alloc_chrdev_region(&kdkchar_devt, 0, nr_devs, KDKCHAR_NAME);
	if (ret)
		return ret;

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 4, 0)
	kdkchar_class = class_create(KDKCHAR_NAME);
#else
	kdkchar_class = class_create(THIS_MODULE, KDKCHAR_NAME);
#endif
	if (IS_ERR(kdkchar_class)) {
		ret = PTR_ERR(kdkchar_class);
		goto err_region;
	}
	kdkchar_class->devnode = kdkchar_devnode;

	kdkchar_devs = kcalloc(nr_devs, sizeof(*kdkchar_devs), GFP_KERNEL);
	if (!kdkchar_devs) {
		ret = -ENOMEM;
		goto err_class;
	}

	for (i = 0; i < nr_devs; i++) {
		ret = kdkchar_setup_dev(&kdkchar_devs[i], i);
		if (ret)
			goto err_devs;
	}

	pr_info("%u devices, major %d, %u bytes each\n", nr_devs,
		MAJOR(kdkchar_devt), bufsize);
	return 0;

err_devs:
	while (i--)
		kdkchar_teardown_dev(&kdkchar_devs[i]);
	kfree(kdkchar_devs);
err_class:
	class_destroy(kdkchar_class);
err_region:
	unregister_chrdev_region(kdkchar_devt, nr_devs);
	return ret;
}

static void __exit kdkchar_exit(void)
{
	unsigned int i = nr_devs;

	while (i--)
		kdkchar_teardown_dev(&kdkchar_devs[i]);
	kfree(kdkchar_devs);
	class_destroy(kdkchar_class);
	unregister_chrdev_region(kdkchar_devt, nr_devs);
	pr_info("unloaded\n");
}

module_init(kdkchar_init);
module_exit(kdkchar_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Character driver: N FIFO ring buffers with blocking I/O, poll and ioctl");
