// SPDX-License-Identifier: GPL-2.0
/*
 * kdkedu - a PCI driver for QEMU's educational device (`-device edu`,
 * vendor 0x1234, device 0x11e8; QEMU's docs/specs/edu.rst).
 *
 * It shows:
 *  - probe/remove with managed resources: pcim_enable_device(),
 *    pcim_iomap_regions() for BAR 0, devm_request_threaded_irq(),
 *    dmam_alloc_coherent(): what probe got is released after remove;
 *  - MSI with a fallback to the shared INTx line (pci_alloc_irq_vectors);
 *  - a hard interrupt handler that reads and acknowledges the device's
 *    interrupt status, and a threaded bottom half that finishes the
 *    operation and signals a completion;
 *  - the factorial unit driven through its interrupt, the liveness
 *    register, and DMA between memory from the DMA API and the device's
 *    4 KiB buffer (the device addresses 28 bits: the DMA mask says so;
 *    QEMU 7.2 reaches all of it but its last byte, see kdkedu_ioctl.h);
 *  - a misc device per edu (/dev/kdkeduN): ioctl numbers in a header
 *    shared with user space, read/write moving the buffer by DMA; sysfs
 *    attributes on the PCI device;
 *  - a remove (unbind, or unload) while a user waits on the device: the
 *    waiter gets -ENODEV, and the state it still holds lives until its
 *    file is closed (a kref), never the registers or the DMA memory.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/completion.h>
#include <linux/dma-mapping.h>
#include <linux/fs.h>
#include <linux/idr.h>
#include <linux/interrupt.h>
#include <linux/io.h>
#include <linux/kref.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/pci.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/wait.h>

#include "kdkedu_ioctl.h"

#define EDU_VENDOR		0x1234
#define EDU_DEVICE		0x11e8

/* registers in BAR 0 (edu.rst) */
#define EDU_IDENT		0x00	/* 0xRRrr00ed: major, minor version */
#define EDU_LIVENESS		0x04	/* reads back the inverse of what was written */
#define EDU_FACTORIAL		0x08	/* write n: computes n!; read the result */
#define EDU_STATUS		0x20
#define  EDU_STATUS_COMPUTING	0x01
#define  EDU_STATUS_IRQFACT	0x80	/* raise an interrupt when n! is done */
#define EDU_IRQ_STATUS		0x24	/* why the device interrupted */
#define EDU_IRQ_RAISE		0x60	/* write bits: the device raises them */
#define EDU_IRQ_ACK		0x64	/* write bits: cleared, the line lowered */
#define EDU_DMA_SRC		0x80
#define EDU_DMA_DST		0x88
#define EDU_DMA_COUNT		0x90
#define EDU_DMA_CMD		0x98
#define  EDU_DMA_START		0x01
#define  EDU_DMA_FROM_DEV	0x02	/* direction: device buffer to memory */
#define  EDU_DMA_IRQ		0x04	/* raise EDU_IRQ_DMA when done */

#define EDU_IRQ_FACT		0x00000001	/* interrupt status: factorial done */
#define EDU_IRQ_DMA		0x00000100	/* interrupt status: DMA done */

#define EDU_DMA_BUF		0x40000		/* the buffer in the device's DMA space */
#define EDU_DMA_SIZE		4096
#define EDU_DMA_BITS		28
#define EDU_TIMEOUT		(5 * HZ)	/* an operation the device never ends */

static bool msi = true;
module_param(msi, bool, 0444);
MODULE_PARM_DESC(msi, "use MSI if the device offers it (default); 0: the INTx line");

static DEFINE_IDA(kdkedu_ida);

struct kdkedu {
	struct kref ref;		/* the PCI device's and each open file's */
	struct pci_dev *pdev;
	void __iomem *regs;
	int id;				/* the N of /dev/kdkeduN */
	char name[16];
	struct miscdevice misc;
	int irq;

	struct mutex lock;		/* one operation at a time; guards gone */
	bool gone;			/* removed: registers and DMA memory freed */
	struct completion done;		/* the operation's interrupt came */
	u32 want;			/* the interrupt bit the operation waits for */

	void *buf;			/* DMA memory, EDU_DMA_SIZE bytes */
	dma_addr_t buf_dma;

	spinlock_t irq_lock;		/* guards pending */
	u32 pending;			/* status bits the bottom half has to handle */
	atomic_t irqs;			/* interrupts that were ours */
	atomic_t events;		/* interrupts handled by the bottom half */
	wait_queue_head_t event_wait;	/* KDKEDU_IOC_WAIT_IRQ waiters */
	u32 last_status;		/* status bits of the last event */
};

static void kdkedu_free(struct kref *ref)
{
	struct kdkedu *edu = container_of(ref, struct kdkedu, ref);

	ida_free(&kdkedu_ida, edu->id);
	kfree(edu);
}

/* Top half: is it ours? Acknowledge it and leave the rest to the thread. */
static irqreturn_t kdkedu_irq(int irq, void *data)
{
	struct kdkedu *edu = data;
	u32 status = ioread32(edu->regs + EDU_IRQ_STATUS);

	if (!status)
		return IRQ_NONE;	/* the INTx line is shared */
	iowrite32(status, edu->regs + EDU_IRQ_ACK);
	spin_lock(&edu->irq_lock);
	edu->pending |= status;
	spin_unlock(&edu->irq_lock);
	atomic_inc(&edu->irqs);
	return IRQ_WAKE_THREAD;
}

/* Bottom half, in a kernel thread: wake whoever waits for these bits. */
static irqreturn_t kdkedu_irq_thread(int irq, void *data)
{
	struct kdkedu *edu = data;
	u32 status;

	spin_lock_irq(&edu->irq_lock);
	status = edu->pending;
	edu->pending = 0;
	spin_unlock_irq(&edu->irq_lock);
	if (!status)
		return IRQ_HANDLED;

	if (status & READ_ONCE(edu->want))
		complete(&edu->done);
	WRITE_ONCE(edu->last_status, status);
	atomic_inc(&edu->events);
	wake_up_interruptible(&edu->event_wait);
	return IRQ_HANDLED;
}

/* What one operation asks of the device. */
struct kdkedu_op {
	u32 bit;		/* the interrupt status bit that ends it */
	u32 n;			/* factorial: its argument */
	u32 off, len;		/* DMA: where in the buffer, how many bytes */
	bool in;		/* DMA: from the device to memory */
};

static void kdkedu_start(struct kdkedu *edu, const struct kdkedu_op *op)
{
	u64 dev_addr = EDU_DMA_BUF + op->off;
	u64 mem = edu->buf_dma + op->off;

	if (op->bit == EDU_IRQ_FACT) {
		iowrite32(EDU_STATUS_IRQFACT, edu->regs + EDU_STATUS);
		iowrite32(op->n, edu->regs + EDU_FACTORIAL);
		return;
	}
	/* 32-bit writes are enough: both addresses are below 2^28 */
	iowrite32(op->in ? dev_addr : mem, edu->regs + EDU_DMA_SRC);
	iowrite32(op->in ? mem : dev_addr, edu->regs + EDU_DMA_DST);
	iowrite32(op->len, edu->regs + EDU_DMA_COUNT);
	iowrite32(EDU_DMA_START | EDU_DMA_IRQ | (op->in ? EDU_DMA_FROM_DEV : 0),
		  edu->regs + EDU_DMA_CMD);
}

/*
 * Start @op and wait (bounded) until the bottom half has seen its
 * interrupt.  Called with edu->lock held.
 */
static int kdkedu_run(struct kdkedu *edu, const struct kdkedu_op *op)
{
	long left;

	reinit_completion(&edu->done);
	WRITE_ONCE(edu->want, op->bit);
	kdkedu_start(edu, op);
	left = wait_for_completion_killable_timeout(&edu->done, EDU_TIMEOUT);
	WRITE_ONCE(edu->want, 0);
	if (READ_ONCE(edu->gone))
		return -ENODEV;
	if (left < 0)
		return left;
	return left ? 0 : -ETIMEDOUT;
}

/* Take the device for one operation; -ENODEV once it is removed. */
static int kdkedu_lock(struct kdkedu *edu)
{
	if (mutex_lock_killable(&edu->lock))
		return -EINTR;
	if (edu->gone) {
		mutex_unlock(&edu->lock);
		return -ENODEV;
	}
	return 0;
}

static int kdkedu_open(struct inode *inode, struct file *file)
{
	struct kdkedu *edu = container_of(file->private_data, struct kdkedu, misc);

	kref_get(&edu->ref);	/* misc_open() holds misc_mtx: remove waits */
	file->private_data = edu;
	return 0;
}

static int kdkedu_release(struct inode *inode, struct file *file)
{
	struct kdkedu *edu = file->private_data;

	kref_put(&edu->ref, kdkedu_free);
	return 0;
}

/* Move @count bytes at *@ppos between user space and the device by DMA. */
static ssize_t kdkedu_dma(struct kdkedu *edu, char __user *ubuf, size_t count,
			  loff_t *ppos, bool in)
{
	struct kdkedu_op op = { .bit = EDU_IRQ_DMA, .in = in };
	size_t len;
	int ret;

	if (*ppos < 0)
		return -EINVAL;
	if (*ppos >= KDKEDU_BUF_SIZE)
		return in ? 0 : -ENOSPC;
	len = min_t(size_t, count, KDKEDU_BUF_SIZE - *ppos);
	if (!len)
		return 0;
	ret = kdkedu_lock(edu);
	if (ret)
		return ret;
	if (!in && copy_from_user(edu->buf + *ppos, ubuf, len)) {
		ret = -EFAULT;
		goto out;
	}
	if (in)		/* what is read back comes from the device alone */
		memset(edu->buf + *ppos, 0, len);
	op.off = *ppos;
	op.len = len;
	ret = kdkedu_run(edu, &op);
	if (ret)
		goto out;
	if (in && copy_to_user(ubuf, edu->buf + *ppos, len)) {
		ret = -EFAULT;
		goto out;
	}
	*ppos += len;
	ret = len;
out:
	mutex_unlock(&edu->lock);
	return ret;
}

static ssize_t kdkedu_read(struct file *file, char __user *ubuf, size_t count,
			   loff_t *ppos)
{
	return kdkedu_dma(file->private_data, ubuf, count, ppos, true);
}

static ssize_t kdkedu_write(struct file *file, const char __user *ubuf,
			    size_t count, loff_t *ppos)
{
	return kdkedu_dma(file->private_data, (char __user *)ubuf, count, ppos,
			  false);
}

static long kdkedu_wait_irq(struct kdkedu *edu, u32 __user *argp)
{
	int seen = atomic_read(&edu->events);
	long ret;

	ret = wait_event_interruptible(edu->event_wait,
				       atomic_read(&edu->events) != seen ||
				       READ_ONCE(edu->gone));
	if (ret)
		return ret;
	if (READ_ONCE(edu->gone))
		return -ENODEV;
	return put_user(READ_ONCE(edu->last_status), argp);
}

static long kdkedu_ioctl(struct file *file, unsigned int cmd, unsigned long arg)
{
	struct kdkedu *edu = file->private_data;
	u32 __user *argp = (u32 __user *)arg;
	u32 val;
	long ret;

	if (cmd == KDKEDU_IOC_WAIT_IRQ)
		return kdkedu_wait_irq(edu, argp);
	if (cmd != KDKEDU_IOC_FACTORIAL && cmd != KDKEDU_IOC_LIVENESS)
		return -ENOTTY;
	if (get_user(val, argp))
		return -EFAULT;
	ret = kdkedu_lock(edu);
	if (ret)
		return ret;
	if (cmd == KDKEDU_IOC_LIVENESS) {
		iowrite32(val, edu->regs + EDU_LIVENESS);
		val = ioread32(edu->regs + EDU_LIVENESS);
	} else {
		struct kdkedu_op op = { .bit = EDU_IRQ_FACT, .n = val };

		ret = kdkedu_run(edu, &op);
		if (!ret)
			val = ioread32(edu->regs + EDU_FACTORIAL);
	}
	mutex_unlock(&edu->lock);
	return ret ?: put_user(val, argp);
}

static const struct file_operations kdkedu_fops = {
	.owner		= THIS_MODULE,
	.open		= kdkedu_open,
	.release	= kdkedu_release,
	.read		= kdkedu_read,
	.write		= kdkedu_write,
	.llseek		= default_llseek,
	.unlocked_ioctl	= kdkedu_ioctl,
	.compat_ioctl	= compat_ptr_ioctl,
};

/* sysfs, on the PCI device: ident, irq_mode, irqs (read); raise (write) */
static ssize_t ident_show(struct device *dev, struct device_attribute *attr,
			  char *buf)
{
	struct kdkedu *edu = dev_get_drvdata(dev);

	return sysfs_emit(buf, "0x%08x\n", ioread32(edu->regs + EDU_IDENT));
}
static DEVICE_ATTR_RO(ident);

static ssize_t irq_mode_show(struct device *dev, struct device_attribute *attr,
			     char *buf)
{
	struct kdkedu *edu = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%s\n", edu->pdev->msi_enabled ? "msi" : "intx");
}
static DEVICE_ATTR_RO(irq_mode);

static ssize_t irqs_show(struct device *dev, struct device_attribute *attr,
			 char *buf)
{
	struct kdkedu *edu = dev_get_drvdata(dev);

	return sysfs_emit(buf, "%d\n", atomic_read(&edu->irqs));
}
static DEVICE_ATTR_RO(irqs);

/* write interrupt status bits: the device raises them (edu's 0x60) */
static ssize_t raise_store(struct device *dev, struct device_attribute *attr,
			   const char *buf, size_t count)
{
	struct kdkedu *edu = dev_get_drvdata(dev);
	u32 bits;
	int ret;

	ret = kstrtou32(buf, 0, &bits);
	if (ret)
		return ret;
	if (!bits)
		return -EINVAL;
	iowrite32(bits, edu->regs + EDU_IRQ_RAISE);
	return count;
}
static DEVICE_ATTR_WO(raise);

static struct attribute *kdkedu_attrs[] = {
	&dev_attr_ident.attr,
	&dev_attr_irq_mode.attr,
	&dev_attr_irqs.attr,
	&dev_attr_raise.attr,
	NULL,
};
ATTRIBUTE_GROUPS(kdkedu);

#ifndef PCI_IRQ_INTX
#define PCI_IRQ_INTX PCI_IRQ_LEGACY	/* the name before 6.8 */
#endif

static int kdkedu_probe(struct pci_dev *pdev, const struct pci_device_id *id)
{
	struct kdkedu *edu;
	u32 ident;
	int ret;

	ret = pcim_enable_device(pdev);
	if (ret)
		return ret;
	ret = pcim_iomap_regions(pdev, BIT(0), KBUILD_MODNAME);
	if (ret)
		return ret;
	ret = dma_set_mask_and_coherent(&pdev->dev, DMA_BIT_MASK(EDU_DMA_BITS));
	if (ret)
		return ret;
	pci_set_master(pdev);

	edu = kzalloc(sizeof(*edu), GFP_KERNEL);
	if (!edu)
		return -ENOMEM;
	kref_init(&edu->ref);
	edu->id = ida_alloc(&kdkedu_ida, GFP_KERNEL);
	if (edu->id < 0) {
		ret = edu->id;
		kfree(edu);
		return ret;
	}
	edu->pdev = pdev;
	edu->regs = pcim_iomap_table(pdev)[0];
	mutex_init(&edu->lock);
	init_completion(&edu->done);
	spin_lock_init(&edu->irq_lock);
	init_waitqueue_head(&edu->event_wait);
	pci_set_drvdata(pdev, edu);

	edu->buf = dmam_alloc_coherent(&pdev->dev, EDU_DMA_SIZE,
				       &edu->buf_dma, GFP_KERNEL);
	if (!edu->buf) {
		ret = -ENOMEM;
		goto err_put;
	}

	ret = pci_alloc_irq_vectors(pdev, 1, 1,
				    (msi ? PCI_IRQ_MSI : 0) | PCI_IRQ_INTX);
	if (ret < 0)
		goto err_put;
	edu->irq = pci_irq_vector(pdev, 0);
	snprintf(edu->name, sizeof(edu->name), "kdkedu%d", edu->id);
	ret = devm_request_threaded_irq(&pdev->dev, edu->irq, kdkedu_irq,
					kdkedu_irq_thread, IRQF_SHARED,
					edu->name, edu);
	if (ret)
		goto err_put;

	edu->misc.minor = MISC_DYNAMIC_MINOR;
	edu->misc.name = edu->name;
	edu->misc.fops = &kdkedu_fops;
	edu->misc.parent = &pdev->dev;
	edu->misc.mode = 0666;
	ret = misc_register(&edu->misc);
	if (ret)
		goto err_irq;

	ident = ioread32(edu->regs + EDU_IDENT);
	dev_info(&pdev->dev, "%s: edu %u.%u, irq %d (%s), dma buffer at %pad\n",
		 edu->name, ident >> 24, (ident >> 16) & 0xff, edu->irq,
		 pdev->msi_enabled ? "msi" : "intx", &edu->buf_dma);
	return 0;

err_irq:
	devm_free_irq(&pdev->dev, edu->irq, edu);	/* its handler uses edu */
err_put:
	kref_put(&edu->ref, kdkedu_free);
	return ret;
}

static void kdkedu_remove(struct pci_dev *pdev)
{
	struct kdkedu *edu = pci_get_drvdata(pdev);

	misc_deregister(&edu->misc);	/* no new opens */
	WRITE_ONCE(edu->gone, true);
	complete_all(&edu->done);	/* an operation in flight gives up */
	wake_up_interruptible(&edu->event_wait);
	/* wait for it: after this no one touches the registers or buffer */
	mutex_lock(&edu->lock);
	mutex_unlock(&edu->lock);
	devm_free_irq(&pdev->dev, edu->irq, edu);	/* its handler uses edu */
	dev_info(&pdev->dev, "%s: removed after %d interrupts\n", edu->name,
		 atomic_read(&edu->irqs));
	/* MSI, the mapping and the DMA memory are released after this */
	kref_put(&edu->ref, kdkedu_free);
}

static const struct pci_device_id kdkedu_ids[] = {
	{ PCI_DEVICE(EDU_VENDOR, EDU_DEVICE) },
	{ }
};
MODULE_DEVICE_TABLE(pci, kdkedu_ids);

static struct pci_driver kdkedu_driver = {
	.name		= KBUILD_MODNAME,
	.id_table	= kdkedu_ids,
	.probe		= kdkedu_probe,
	.remove		= kdkedu_remove,
	.dev_groups	= kdkedu_groups,
};
module_pci_driver(kdkedu_driver);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("PCI driver for QEMU's edu device: interrupts, MSI, DMA");
