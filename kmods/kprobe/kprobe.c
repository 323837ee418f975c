// SPDX-License-Identifier: GPL-2.0
/*
 * kprobe - count the calls of a kernel function with a kprobe.
 *
 * It shows:
 *  - struct kprobe with .symbol_name, register_kprobe() and
 *    unregister_kprobe(); the kernel resolves the name itself, so no
 *    address has to be looked up;
 *  - a pre_handler, which runs just before the probed instruction with
 *    preemption (and usually interrupts) disabled, so it must be short
 *    and must not sleep: here a single atomic64_inc();
 *  - propagating an error from init: a symbol that does not exist or
 *    cannot be probed makes register_kprobe() fail, and returning that
 *    error makes insmod fail, with the module never loaded;
 *  - a read-only debugfs counter (debugfs_create_file_unsafe() with a
 *    DEFINE_DEBUGFS_ATTRIBUTE).
 *
 * The default symbol, kernel_clone(), runs for every fork(), vfork()
 * and clone(), so any command started in a shell moves the counter.
 *
 *	insmod kprobe.ko symbol=kernel_clone
 *	cat /sys/kernel/debug/kdk_kprobe/hits
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/debugfs.h>
#include <linux/init.h>
#include <linux/kprobes.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

static char *symbol = "kernel_clone";
module_param(symbol, charp, 0444);
MODULE_PARM_DESC(symbol, "Kernel function to probe (default kernel_clone)");

static atomic64_t kp_hits = ATOMIC64_INIT(0);
static struct dentry *kp_dir;

static int kp_pre(struct kprobe *p, struct pt_regs *regs)
{
	atomic64_inc(&kp_hits);
	return 0;	/* 0: let the probed instruction run normally */
}

static struct kprobe kp_probe = {
	.pre_handler = kp_pre,
};

static int hits_get(void *data, u64 *val)
{
	*val = atomic64_read(&kp_hits);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(hits_fops, hits_get, NULL, "%llu\n");

static int __init kp_init(void)
{
	int ret;

	kp_probe.symbol_name = symbol;
	ret = register_kprobe(&kp_probe);
	if (ret) {
		pr_err("register_kprobe(%s) failed: %d\n", symbol, ret);
		return ret;
	}

	kp_dir = debugfs_create_dir("kdk_kprobe", NULL);
	debugfs_create_file_unsafe("hits", 0444, kp_dir, NULL, &hits_fops);

	pr_info("probe on %s at %pS\n", symbol, kp_probe.addr);
	return 0;
}

static void __exit kp_exit(void)
{
	debugfs_remove_recursive(kp_dir);
	/* waits until no CPU is still running kp_pre() */
	unregister_kprobe(&kp_probe);
	pr_info("removed probe on %s after %lld hits\n", symbol,
		atomic64_read(&kp_hits));
}

module_init(kp_init);
module_exit(kp_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("A kprobe counting calls of a kernel function");
