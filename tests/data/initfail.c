// SPDX-License-Identifier: GPL-2.0
/*
 * initfail: a module whose init fails or does not return, for the tests of
 * how kdk reports a load that fails (tests/test_load_failures.py).
 *
 * err=N makes init return -N (err=22: -EINVAL). wait_ms=M makes init wait
 * first, until "release" is written to (echo 1 >
 * /sys/module/initfail/parameters/release, which exists while init runs)
 * or M ms have passed: a test sees an init that has not returned, and ends
 * it when it wants. The wait is interruptible and bounded, so a failed
 * test does not leave the guest with an init that never returns.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/completion.h>
#include <linux/jiffies.h>
#include <linux/module.h>

static int err;
module_param(err, int, 0444);
MODULE_PARM_DESC(err, "the errno init returns, negated (22: -EINVAL); 0: it succeeds");

static unsigned int wait_ms;
module_param(wait_ms, uint, 0444);
MODULE_PARM_DESC(wait_ms, "how long init waits for a write to release, at most, in ms");

static DECLARE_COMPLETION(released);

static int release_set(const char *val, const struct kernel_param *kp)
{
	complete_all(&released);
	return 0;
}

static const struct kernel_param_ops release_ops = {
	.set = release_set,
};
module_param_cb(release, &release_ops, NULL, 0200);
MODULE_PARM_DESC(release, "write anything to end init's wait");

static int __init initfail_init(void)
{
	long left;

	if (err < 0 || err > MAX_ERRNO) {
		pr_err("err=%d out of range 0..%d\n", err, MAX_ERRNO);
		return -EINVAL;
	}
	if (wait_ms) {
		pr_info("init waits %u ms at most for release\n", wait_ms);
		left = wait_for_completion_interruptible_timeout(&released,
								 msecs_to_jiffies(wait_ms));
		pr_info("init waited: %s\n", left > 0 ? "released" :
			left == 0 ? "timed out" : "interrupted");
	}
	pr_info("init returns %d\n", -err);
	return -err;
}

static void __exit initfail_exit(void)
{
	pr_info("unloaded\n");
}

module_init(initfail_init);
module_exit(initfail_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("An init that returns a chosen errno, or waits to be released first");
