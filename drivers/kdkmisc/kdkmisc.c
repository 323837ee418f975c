// SPDX-License-Identifier: GPL-2.0
/*
 * kdkmisc - a misc device with a small line-based protocol.
 *
 * It shows:
 *  - misc_register() with MISC_DYNAMIC_MINOR: one call gives a minor
 *    number under the shared misc major (10), a sysfs entry and, through
 *    devtmpfs, the node /dev/kdkmisc (mode 0666 from .mode);
 *  - per-open state in file->private_data (misc_open() first sets it to
 *    our struct miscdevice; our ->open() replaces it);
 *  - a validating ->write() that parses a command line and a ->read()
 *    that hands out the answer.
 *
 * Protocol: write one line "<command> <text>\n" (the newline is
 * optional); the commands are upper, lower, rev and len.  The next read
 * returns the answer as one line:
 *
 *	$ echo "upper hello" > /dev/kdkmisc
 *	$ cat /dev/kdkmisc
 *	HELLO
 *
 * The answer is kept by the device, so it can be read from another open
 * file; each open file reads each new answer once, then gets end of file.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/fs.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/minmax.h>
#include <linux/miscdevice.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

/* bytes in one command, its '\n' included */
#define KDKMISC_MAX_WRITE	256
/* the digits of a size_t and the NUL; @out of kdkmisc_run() has 24 bytes */
#define KDKMISC_NUM_ROOM	21

/* the latest answer, shared by all users of the device */
static DEFINE_MUTEX(kdkmisc_lock);	/* protects all of the below */
static char kdkmisc_result[KDKMISC_MAX_WRITE + 1];
static size_t kdkmisc_result_len;
static unsigned long kdkmisc_gen;	/* bumped for every new answer */

/* per open file, also protected by kdkmisc_lock */
struct kdkmisc_reader {
	unsigned long gen;	/* answer this reader is reading */
	size_t pos;		/* bytes of it already read */
};

static int kdkmisc_open(struct inode *inode, struct file *file)
{
	struct kdkmisc_reader *r;

	r = kzalloc(sizeof(*r), GFP_KERNEL);
	if (!r)
		return -ENOMEM;
	/* gen 0 is never used by an answer: the current one is unread */
	file->private_data = r;
	return stream_open(inode, file);
}

static int kdkmisc_release(struct inode *inode, struct file *file)
{
	kfree(file->private_data);
	return 0;
}

static ssize_t kdkmisc_read(struct file *file, char __user *ubuf,
			    size_t count, loff_t *ppos)
{
	struct kdkmisc_reader *r = file->private_data;
	ssize_t ret = 0;
	size_t n;

	mutex_lock(&kdkmisc_lock);
	if (r->gen != kdkmisc_gen) {	/* a new answer: start over */
		r->gen = kdkmisc_gen;
		r->pos = 0;
	}
	if (r->pos < kdkmisc_result_len) {
		n = min(count, kdkmisc_result_len - r->pos);
		if (copy_to_user(ubuf, kdkmisc_result + r->pos, n)) {
			ret = -EFAULT;
		} else {
			r->pos += n;
			ret = n;
		}
	}
	mutex_unlock(&kdkmisc_lock);

	return ret;	/* 0: end of file, nothing (more) to read */
}

static bool kdkmisc_is_in(char c, char lo, char hi)
{
	return c >= lo && c <= hi;
}

/*
 * Runs @cmd on the @len bytes of @text and writes the answer line,
 * with its '\n', to @out, which has room for len + 2 bytes or 24 bytes,
 * whichever is more.  Returns its length, or -EINVAL.
 */
static ssize_t kdkmisc_run(const char *cmd, const char *text, size_t len,
			   char *out)
{
	size_t i;

	/*
	 * Only ASCII letters change case: the kernel's toupper() would
	 * also convert Latin-1 bytes and so break UTF-8 text.
	 */
	if (!strcmp(cmd, "upper")) {
		for (i = 0; i < len; i++)
			out[i] = kdkmisc_is_in(text[i], 'a', 'z') ?
				 text[i] - 'a' + 'A' : text[i];
	} else if (!strcmp(cmd, "lower")) {
		for (i = 0; i < len; i++)
			out[i] = kdkmisc_is_in(text[i], 'A', 'Z') ?
				 text[i] - 'A' + 'a' : text[i];
	} else if (!strcmp(cmd, "rev")) {
		for (i = 0; i < len; i++)
			out[i] = text[len - 1 - i];
	} else if (!strcmp(cmd, "len")) {
		len = scnprintf(out, KDKMISC_NUM_ROOM, "%zu", len);
	} else {
		return -EINVAL;
	}

	out[len] = '\n';
	return len + 1;
}

static ssize_t kdkmisc_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	char *line, *text, *out;
	size_t len;
	ssize_t ret;

	if (count == 0)
		return -EINVAL;
	if (count > KDKMISC_MAX_WRITE)
		return -E2BIG;

	line = memdup_user_nul(ubuf, count);
	if (IS_ERR(line))
		return PTR_ERR(line);
	out = kmalloc(KDKMISC_MAX_WRITE + 1, GFP_KERNEL);
	if (!out) {
		ret = -ENOMEM;
		goto out_free;
	}

	len = count;
	if (line[len - 1] == '\n')
		line[--len] = '\0';
	/* one line only, and no NUL bytes inside it */
	if (strlen(line) != len || strchr(line, '\n')) {
		ret = -EINVAL;
		goto out_free;
	}

	/* "<command>" or "<command> <text>"; text may contain spaces */
	text = strchr(line, ' ');
	if (text)
		*text++ = '\0';
	else
		text = line + len;	/* the empty string */

	ret = kdkmisc_run(line, text, strlen(text), out);
	if (ret < 0)
		goto out_free;

	mutex_lock(&kdkmisc_lock);
	memcpy(kdkmisc_result, out, ret);
	kdkmisc_result_len = ret;
	kdkmisc_gen++;
	if (!kdkmisc_gen)	/* keep 0 for "never read" */
		kdkmisc_gen = 1;
	mutex_unlock(&kdkmisc_lock);
	ret = count;

out_free:
	kfree(out);
	kfree(line);
	return ret;
}

static const struct file_operations kdkmisc_fops = {
	.owner		= THIS_MODULE,
	.open		= kdkmisc_open,
	.release	= kdkmisc_release,
	.read		= kdkmisc_read,
	.write		= kdkmisc_write,
};

static struct miscdevice kdkmisc_dev = {
	.minor	= MISC_DYNAMIC_MINOR,
	.name	= "kdkmisc",
	.fops	= &kdkmisc_fops,
	.mode	= 0666,
};

static int __init kdkmisc_init(void)
{
	int ret;

	ret = misc_register(&kdkmisc_dev);
	if (ret) {
		pr_err("misc_register failed: %d\n", ret);
		return ret;
	}

	pr_info("registered /dev/%s, minor %d\n", kdkmisc_dev.name,
		kdkmisc_dev.minor);
	return 0;
}

static void __exit kdkmisc_exit(void)
{
	misc_deregister(&kdkmisc_dev);
	pr_info("unloaded\n");
}

module_init(kdkmisc_init);
module_exit(kdkmisc_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Misc device answering upper/lower/rev/len command lines");
