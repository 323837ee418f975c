// SPDX-License-Identifier: GPL-2.0
/*
 * kthread - a kernel thread that wakes up periodically until unload.
 *
 * It shows:
 *  - kthread_run() to create and start a thread, kthread_stop() to end
 *    it; kthread_stop() sets the "should stop" flag, wakes the thread
 *    and waits until its function has returned;
 *  - the race-free way to sleep in such a thread: set the task state
 *    *before* testing kthread_should_stop(), so a stop request that
 *    arrives in between is not lost and unload stays prompt even with a
 *    long interval;
 *  - module_param_cb() with custom kernel_param_ops: "interval_ms" is
 *    validated and may be changed while the thread runs, and "ticks" is
 *    a read-only parameter whose ->get() reports a live counter.
 *
 *	insmod kthread.ko interval_ms=50
 *	cat /sys/module/kthread/parameters/ticks
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/err.h>
#include <linux/init.h>
#include <linux/jiffies.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/sched.h>

#define KT_INTERVAL_MIN		1	/* ms */
#define KT_INTERVAL_MAX		10000	/* ms */

static struct task_struct *kt_task;
static atomic_long_t kt_ticks = ATOMIC_LONG_INIT(0);

/* interval_ms: 1..10000, read by the thread before each sleep */
static int kt_interval_ms = 100;

static int interval_set(const char *val, const struct kernel_param *kp)
{
	int v, ret;

	ret = kstrtoint(val, 0, &v);
	if (ret)
		return ret;
	if (v < KT_INTERVAL_MIN || v > KT_INTERVAL_MAX)
		return -EINVAL;

	WRITE_ONCE(*(int *)kp->arg, v);
	return 0;
}

static const struct kernel_param_ops interval_ops = {
	.set = interval_set,
	.get = param_get_int,
};

module_param_cb(interval_ms, &interval_ops, &kt_interval_ms, 0644);
MODULE_PARM_DESC(interval_ms, "Wake-up period in ms, 1..10000 (default 100)");

/* ticks: read-only; ->get() prints the live counter */
static int ticks_set(const char *val, const struct kernel_param *kp)
{
	/* only reached by "insmod kthread.ko ticks=..." */
	return -EPERM;
}

static int ticks_get(char *buf, const struct kernel_param *kp)
{
	return scnprintf(buf, PAGE_SIZE, "%ld\n", atomic_long_read(&kt_ticks));
}

static const struct kernel_param_ops ticks_ops = {
	.set = ticks_set,
	.get = ticks_get,
};

module_param_cb(ticks, &ticks_ops, NULL, 0444);
MODULE_PARM_DESC(ticks, "Number of periodic wake-ups so far (read-only)");

static int kt_fn(void *data)
{
	pr_info("worker started, interval_ms=%d\n", READ_ONCE(kt_interval_ms));

	for (;;) {
		/*
		 * Mark ourselves as going to sleep first: if kthread_stop()
		 * runs after this point, its wake-up puts us back to
		 * TASK_RUNNING and schedule_timeout() returns at once.
		 */
		set_current_state(TASK_INTERRUPTIBLE);
		if (kthread_should_stop())
			break;
		schedule_timeout(msecs_to_jiffies(READ_ONCE(kt_interval_ms)));
		if (kthread_should_stop())
			break;
		atomic_long_inc(&kt_ticks);
	}
	__set_current_state(TASK_RUNNING);

	pr_info("worker stopping\n");
	return 0;
}

static int __init kt_init(void)
{
	kt_task = kthread_run(kt_fn, NULL, "kdk_kthread");
	if (IS_ERR(kt_task))
		return PTR_ERR(kt_task);

	return 0;
}

static void __exit kt_exit(void)
{
	/* returns once kt_fn() has returned */
	kthread_stop(kt_task);
	pr_info("stopped after %ld ticks\n", atomic_long_read(&kt_ticks));
}

module_init(kt_init);
module_exit(kt_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("A kernel thread that wakes up periodically and counts");
