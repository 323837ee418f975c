// SPDX-License-Identifier: GPL-2.0
/*
 * hello - the smallest useful kernel module.
 *
 * It shows the three things every module has: an init function that runs
 * at insmod time, an exit function that runs at rmmod time, and a module
 * parameter that can be set on the insmod command line:
 *
 *	insmod hello.ko greeting=hi
 *
 * pr_fmt() puts the module name in front of every message, so its lines
 * are easy to find in the kernel log.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/module.h>
#include <linux/moduleparam.h>

/* Read-only in sysfs (0444): /sys/module/hello/parameters/greeting */
static char *greeting = "hello";
module_param(greeting, charp, 0444);
MODULE_PARM_DESC(greeting, "Word printed when the module is loaded");

static int __init hello_init(void)
{
	pr_info("%s, world\n", greeting);
	return 0;	/* a non-zero value would make insmod fail */
}

static void __exit hello_exit(void)
{
	pr_info("goodbye, world\n");
}

module_init(hello_init);
module_exit(hello_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Hello world with a module parameter");
