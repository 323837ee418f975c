// SPDX-License-Identifier: GPL-2.0
/*
 * badunwind: a module whose init unwinds wrongly, for the test of kdk's
 * fault-injection sweep (tests/test_faultinject_vm.py). Its init makes
 * three allocations; when the second fails, the first is freed twice
 * (KASAN: double-free); when the third fails, the second is not freed (a
 * leak kmemleak finds). Never load it outside that test.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/module.h>
#include <linux/slab.h>

static void *a, *b, *c;

static int __init badunwind_init(void)
{
	a = kmalloc(64, GFP_KERNEL);
	if (!a)
		return -ENOMEM;
	b = kmalloc(128, GFP_KERNEL);
	if (!b)
		goto free_a_twice;
	c = kmalloc(256, GFP_KERNEL);
	if (!c)
		goto free_a;	/* b is forgotten */
	pr_info("loaded\n");
	return 0;

free_a_twice:
	kfree(a);
free_a:
	kfree(a);
	return -ENOMEM;
}

static void __exit badunwind_exit(void)
{
	kfree(c);
	kfree(b);
	kfree(a);
}

module_init(badunwind_init);
module_exit(badunwind_exit);
MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("An init whose error path frees twice and leaks");
