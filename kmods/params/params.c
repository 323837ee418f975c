// SPDX-License-Identifier: GPL-2.0
/*
 * params - module parameters of every common kind.
 *
 * It shows:
 *  - module_param() with the built-in types int, bool and charp;
 *  - module_param_array() with a count of how many values were given;
 *  - the permission bits, which decide whether the value shows up in
 *    /sys/module/params/parameters/ and whether root may change it there
 *    while the module is loaded (0644) or only read it (0444);
 *  - module_param_cb() with a custom struct kernel_param_ops that
 *    validates the value.  The same ->set() runs for "insmod params.ko
 *    level=N" and for "echo N > /sys/module/params/parameters/level", so
 *    a bad value is refused in both places with -EINVAL.
 *
 * The built-in int parser already refuses junk such as count=abc: insmod
 * then fails with -EINVAL and the module is never initialised.
 *
 *	insmod params.ko count=3 verbose=1 name=kdk values=1,2,3 level=7
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

#define PARAMS_MAX_VALUES	8
#define PARAMS_LEVEL_MIN	0
#define PARAMS_LEVEL_MAX	10

/* 0644: root may change it at run time, without any validation. */
static int count = 1;
module_param(count, int, 0644);
MODULE_PARM_DESC(count, "An integer (default 1)");

/* bool accepts y/n/Y/N/1/0 and shows as Y or N. */
static bool verbose;
module_param(verbose, bool, 0644);
MODULE_PARM_DESC(verbose, "A boolean (default N)");

/* 0444: read-only in sysfs, can only be set at insmod time. */
static char *name = "kdk";
module_param(name, charp, 0444);
MODULE_PARM_DESC(name, "A string (default \"kdk\")");

/* An array: values=1,2,3 sets nr_values to 3. */
static int values[PARAMS_MAX_VALUES];
static unsigned int nr_values;
module_param_array(values, int, &nr_values, 0444);
MODULE_PARM_DESC(values, "Up to 8 comma-separated integers");

/*
 * A validated parameter: only PARAMS_LEVEL_MIN..PARAMS_LEVEL_MAX are
 * accepted.  The sysfs write path holds the module's parameter lock
 * around ->set() and ->get(), so no extra locking is needed here.
 */
static int level = 5;

static int level_set(const char *val, const struct kernel_param *kp)
{
	int v, ret;

	ret = kstrtoint(val, 0, &v);
	if (ret)
		return ret;
	if (v < PARAMS_LEVEL_MIN || v > PARAMS_LEVEL_MAX)
		return -EINVAL;

	*(int *)kp->arg = v;
	pr_info("level set to %d\n", v);
	return 0;
}

static const struct kernel_param_ops level_ops = {
	.set = level_set,
	.get = param_get_int,
};

module_param_cb(level, &level_ops, &level, 0644);
MODULE_PARM_DESC(level, "An integer 0..10, validated (default 5)");

static int __init params_init(void)
{
	char buf[PARAMS_MAX_VALUES * 13];
	size_t len = 0;
	unsigned int i;

	buf[0] = '\0';
	for (i = 0; i < nr_values; i++)
		len += scnprintf(buf + len, sizeof(buf) - len, "%s%d",
				 i ? "," : "", values[i]);

	pr_info("count=%d verbose=%c name=%s level=%d\n",
		count, verbose ? 'Y' : 'N', name, level);
	pr_info("nr_values=%u values=%s\n", nr_values, buf);
	return 0;
}

static void __exit params_exit(void)
{
	pr_info("exit count=%d verbose=%c level=%d\n",
		count, verbose ? 'Y' : 'N', level);
}

module_init(params_init);
module_exit(params_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Module parameters: int, bool, charp, array and a validated one");
