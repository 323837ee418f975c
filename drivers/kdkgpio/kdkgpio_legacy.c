// SPDX-License-Identifier: GPL-2.0
/*
 * kdkgpio_legacy - the classic example of the legacy GPIO number API, as
 * in older books and board files: gpio_request() on a fixed number,
 * gpio_direction_output(), gpio_set_value(), gpio_get_value(), gpio_free().
 *
 * Numbers are global: they mean something only when a chip was given a
 * fixed base (insmod kdkgpio.ko base=0: GPIO 4 is its line 4).  New code
 * uses descriptors (gpiod_get(), see kdkgpio_irq.c) instead.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/errno.h>
#include <linux/gpio.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>

static int gpio = 4;
module_param(gpio, int, 0444);
MODULE_PARM_DESC(gpio, "GPIO number driven high while loaded (default 4)");

static int __init kdkgpio_legacy_init(void)
{
	int ret;

	ret = gpio_request(gpio, "kdkgpio_legacy");
	if (ret == -EPROBE_DEFER || ret == -EINVAL) {
		pr_err("no GPIO %d (a chip with a fixed base has it: kdkgpio base=0)\n",
		       gpio);
		return -ENODEV;
	}
	if (ret)
		return ret;
	ret = gpio_direction_output(gpio, 1);
	if (ret) {
		gpio_free(gpio);
		return ret;
	}
	pr_info("GPIO %d is %d\n", gpio, gpio_get_value(gpio));
	return 0;
}

static void __exit kdkgpio_legacy_exit(void)
{
	gpio_set_value(gpio, 0);
	pr_info("GPIO %d is %d\n", gpio, gpio_get_value(gpio));
	gpio_free(gpio);
}

module_init(kdkgpio_legacy_init);
module_exit(kdkgpio_legacy_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Legacy GPIO numbers: drives a GPIO of a fixed-base chip high");
