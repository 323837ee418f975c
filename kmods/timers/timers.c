// SPDX-License-Identifier: GPL-2.0
/*
 * timers - a periodic timer_list and a periodic hrtimer, side by side.
 *
 * It shows:
 *  - struct timer_list: timer_setup(), mod_timer() and
 *    del_timer_sync()/timer_shutdown_sync().  Its expiry is in jiffies, so
 *    the period is rounded up to whole ticks (1000/HZ ms each); the
 *    callback runs in softirq context and re-arms the timer relative to
 *    its previous expiry, so the average rate does not drift;
 *  - struct hrtimer: hrtimer_init()/hrtimer_setup(), hrtimer_start(),
 *    hrtimer_forward_now() + HRTIMER_RESTART for a periodic timer, and
 *    hrtimer_cancel().  Its period is in nanoseconds and the callback
 *    runs in hard interrupt context;
 *  - both callbacks only touch atomics: they must never sleep;
 *  - debugfs files made with DEFINE_DEBUGFS_ATTRIBUTE and
 *    debugfs_create_u32() to read the counters and the real periods.
 *
 *	insmod timers.ko timer_ms=20 hrtimer_us=5000
 *	cat /sys/kernel/debug/kdk_timers/timer_count
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/debugfs.h>
#include <linux/hrtimer.h>
#include <linux/init.h>
#include <linux/jiffies.h>
#include <linux/ktime.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/timer.h>
#include <linux/version.h>

static unsigned int timer_ms = 20;
module_param(timer_ms, uint, 0444);
MODULE_PARM_DESC(timer_ms, "timer_list period in ms, 1..10000 (default 20)");

static unsigned int hrtimer_us = 5000;
module_param(hrtimer_us, uint, 0444);
MODULE_PARM_DESC(hrtimer_us, "hrtimer period in us, 100..10000000 (default 5000)");

static struct timer_list tm_timer;
static unsigned long tm_timer_period;		/* jiffies */
static atomic_long_t tm_timer_count = ATOMIC_LONG_INIT(0);

static struct hrtimer tm_hrtimer;
static ktime_t tm_hrtimer_period;
static atomic_long_t tm_hrtimer_count = ATOMIC_LONG_INIT(0);

/* effective periods, as shown in debugfs */
static u32 tm_timer_period_us;
static u32 tm_hrtimer_period_us;

static struct dentry *tm_dir;

/* softirq context */
static void tm_timer_fn(struct timer_list *t)
{
	atomic_long_inc(&tm_timer_count);
	/* relative to the last expiry, not to "now": no drift */
	mod_timer(t, t->expires + tm_timer_period);
}

/* hard interrupt context */
static enum hrtimer_restart tm_hrtimer_fn(struct hrtimer *t)
{
	atomic_long_inc(&tm_hrtimer_count);
	hrtimer_forward_now(t, tm_hrtimer_period);
	return HRTIMER_RESTART;
}

static int timer_count_get(void *data, u64 *val)
{
	*val = atomic_long_read(&tm_timer_count);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(timer_count_fops, timer_count_get, NULL, "%llu\n");

static int hrtimer_count_get(void *data, u64 *val)
{
	*val = atomic_long_read(&tm_hrtimer_count);
	return 0;
}
DEFINE_DEBUGFS_ATTRIBUTE(hrtimer_count_fops, hrtimer_count_get, NULL, "%llu\n");

static int __init tm_init(void)
{
	if (timer_ms < 1 || timer_ms > 10000) {
		pr_err("timer_ms=%u out of range 1..10000\n", timer_ms);
		return -EINVAL;
	}
	if (hrtimer_us < 100 || hrtimer_us > 10000000) {
		pr_err("hrtimer_us=%u out of range 100..10000000\n", hrtimer_us);
		return -EINVAL;
	}

	tm_timer_period = msecs_to_jiffies(timer_ms);	/* rounds up */
	tm_timer_period_us = jiffies_to_usecs(tm_timer_period);
	tm_hrtimer_period = ns_to_ktime((u64)hrtimer_us * NSEC_PER_USEC);
	tm_hrtimer_period_us = hrtimer_us;

	/* debugfs failures are not fatal, the timers still run */
	tm_dir = debugfs_create_dir("kdk_timers", NULL);
	debugfs_create_file_unsafe("timer_count", 0444, tm_dir, NULL,
				   &timer_count_fops);
	debugfs_create_file_unsafe("hrtimer_count", 0444, tm_dir, NULL,
				   &hrtimer_count_fops);
	debugfs_create_u32("timer_period_us", 0444, tm_dir,
			   &tm_timer_period_us);
	debugfs_create_u32("hrtimer_period_us", 0444, tm_dir,
			   &tm_hrtimer_period_us);

	timer_setup(&tm_timer, tm_timer_fn, 0);
	mod_timer(&tm_timer, jiffies + tm_timer_period);

#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 13, 0)
	hrtimer_setup(&tm_hrtimer, tm_hrtimer_fn, CLOCK_MONOTONIC,
		      HRTIMER_MODE_REL);
#else
	hrtimer_init(&tm_hrtimer, CLOCK_MONOTONIC, HRTIMER_MODE_REL);
	tm_hrtimer.function = tm_hrtimer_fn;
#endif
	hrtimer_start(&tm_hrtimer, tm_hrtimer_period, HRTIMER_MODE_REL);

	pr_info("started: timer every %lu jiffies (%u us, HZ=%d), hrtimer every %u us\n",
		tm_timer_period, tm_timer_period_us, HZ, tm_hrtimer_period_us);
	return 0;
}

static void __exit tm_exit(void)
{
	debugfs_remove_recursive(tm_dir);

	/* both wait for a callback that is running on another CPU */
	hrtimer_cancel(&tm_hrtimer);
#if LINUX_VERSION_CODE >= KERNEL_VERSION(6, 2, 0)
	/* also stops the callback from arming the timer again */
	timer_shutdown_sync(&tm_timer);
#else
	del_timer_sync(&tm_timer);
#endif

	pr_info("exit timer_count=%ld hrtimer_count=%ld\n",
		atomic_long_read(&tm_timer_count),
		atomic_long_read(&tm_hrtimer_count));
}

module_init(tm_init);
module_exit(tm_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("A periodic timer_list and a periodic hrtimer counting their firings");
