// SPDX-License-Identifier: GPL-2.0
/*
 * faulty - crash the kernel on purpose, to learn to read an oops.
 *
 * Writing to /sys/kernel/debug/kdk_faulty/trigger runs one of:
 *  "null" (or "1") - faulty_crash(): writes through a NULL pointer, which
 *                    gives "BUG: kernel NULL pointer dereference" and an
 *                    oops whose RIP is faulty_crash+0x.../0x... [faulty];
 *  "warn"          - faulty_warn(): WARN_ON(1), a warning with a stack
 *                    trace; the write then succeeds and the system goes on;
 *  "bug"           - faulty_bug(): BUG(), "kernel BUG at .../faulty.c:N";
 *  "lockup"        - faulty_lockup(): spins with preemption disabled and
 *                    never returns, until the soft lockup detector reports
 *                    "BUG: soft lockup - CPU#N stuck for Ns!".
 * Each function is noinline so that it keeps its own name in the call
 * trace instead of being folded into the write handler.
 *
 * With panic_on_oops=0 (the default) an oops kills only the writing
 * process and the kernel keeps running, tainted; with oops=panic or
 * panic_on_oops=1 the whole machine panics.
 *
 * The file is made with debugfs_create_file_unsafe(): the safe variant
 * counts every handler that is running so that removing the file can
 * wait for them, and a handler that dies in an oops never finishes, so
 * rmmod would then hang forever.  The unsafe variant only holds a
 * module reference while the file is open, and that is dropped when the
 * killed process' files are closed, so the module can still be removed.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bug.h>
#include <linux/compiler.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/processor.h>
#include <linux/string.h>
#include <linux/uaccess.h>

static struct dentry *faulty_dir;

static noinline void faulty_crash(void)
{
	int *ptr = NULL;

	pr_info("dereferencing a NULL pointer\n");
	/* WRITE_ONCE(): the compiler must really perform the store */
	WRITE_ONCE(*ptr, 42);
}

static noinline void faulty_warn(void)
{
	pr_info("triggering WARN_ON(1)\n");
	WARN_ON(1);
}

static noinline void faulty_bug(void)
{
	pr_info("triggering BUG()\n");
	BUG();
}

static noinline void faulty_lockup(void)
{
	pr_info("spinning with preemption disabled\n");
	preempt_disable();
	for (;;)
		cpu_relax();
}

static ssize_t trigger_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	char buf[16];

	if (count == 0 || count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';

	/* sysfs_streq() ignores one trailing newline */
	if (sysfs_streq(buf, "null") || sysfs_streq(buf, "1"))
		faulty_crash();
	else if (sysfs_streq(buf, "warn"))
		faulty_warn();
	else if (sysfs_streq(buf, "bug"))
		faulty_bug();
	else if (sysfs_streq(buf, "lockup"))
		faulty_lockup();
	else
		return -EINVAL;

	return count;
}

static const struct file_operations trigger_fops = {
	.owner	= THIS_MODULE,
	.open	= simple_open,
	.write	= trigger_write,
	.llseek	= noop_llseek,
};

static int __init faulty_init(void)
{
	faulty_dir = debugfs_create_dir("kdk_faulty", NULL);
	debugfs_create_file_unsafe("trigger", 0200, faulty_dir, NULL,
				   &trigger_fops);
	pr_info("write null, warn, bug or lockup to /sys/kernel/debug/kdk_faulty/trigger\n");
	return 0;
}

static void __exit faulty_exit(void)
{
	debugfs_remove_recursive(faulty_dir);
	pr_info("unloaded\n");
}

module_init(faulty_init);
module_exit(faulty_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Deliberate NULL dereference, WARN_ON and BUG from a debugfs file");
