// SPDX-License-Identifier: GPL-2.0
/*
 * kdkgpio_irq - a kernel consumer of a GPIO line that takes an interrupt on
 * each of its edges and counts them.
 *
 * It shows how a driver gets a GPIO without knowing its number: board code
 * (here, this module) adds a gpiod_lookup_table mapping the function
 * "button" of the device "kdkgpio-irq" to line `line` of the chip labelled
 * "kdkgpio"; the driver asks gpiod_get(dev, "button", GPIOD_IN), then
 * gpiod_to_irq() and request_irq() with both edge triggers.  The handler
 * reads the line to tell a rising edge from a falling one.
 *
 * sysfs: /sys/devices/platform/kdkgpio-irq/{rising,falling} hold the
 * counts; writing 0 to either resets both.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/device.h>
#include <linux/err.h>
#include <linux/gpio/consumer.h>
#include <linux/gpio/machine.h>
#include <linux/init.h>
#include <linux/interrupt.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/platform_device.h>

#define KDKGPIO_IRQ_DEV	"kdkgpio-irq"

static unsigned int line;
module_param(line, uint, 0444);
MODULE_PARM_DESC(line, "line of the chip labelled kdkgpio to watch (default 0)");

static struct gpiod_lookup_table kdkgpio_irq_lookup = {
	.dev_id = KDKGPIO_IRQ_DEV,
	.table = {
		GPIO_LOOKUP("kdkgpio", 0, "button", GPIO_ACTIVE_HIGH),
		{ }
	},
};

static struct platform_device *kdkgpio_irq_pdev;
static struct gpio_desc *kdkgpio_irq_desc;
static int kdkgpio_irq_nr;
static atomic_t kdkgpio_rising = ATOMIC_INIT(0);
static atomic_t kdkgpio_falling = ATOMIC_INIT(0);

static irqreturn_t kdkgpio_irq_handler(int irq, void *data)
{
	atomic_inc(gpiod_get_value(kdkgpio_irq_desc) ? &kdkgpio_rising
						      : &kdkgpio_falling);
	return IRQ_HANDLED;
}

static ssize_t kdkgpio_irq_count_store(struct device *dev,
				       struct device_attribute *attr,
				       const char *buf, size_t count)
{
	unsigned int value;
	int ret;

	ret = kstrtouint(buf, 0, &value);
	if (ret)
		return ret;
	if (value)
		return -EINVAL;
	atomic_set(&kdkgpio_rising, 0);
	atomic_set(&kdkgpio_falling, 0);
	return count;
}

static ssize_t rising_show(struct device *dev, struct device_attribute *attr,
			   char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&kdkgpio_rising));
}

static ssize_t falling_show(struct device *dev, struct device_attribute *attr,
			    char *buf)
{
	return sysfs_emit(buf, "%d\n", atomic_read(&kdkgpio_falling));
}

static struct device_attribute dev_attr_rising =
	__ATTR(rising, 0644, rising_show, kdkgpio_irq_count_store);
static struct device_attribute dev_attr_falling =
	__ATTR(falling, 0644, falling_show, kdkgpio_irq_count_store);

static struct attribute *kdkgpio_irq_attrs[] = {
	&dev_attr_rising.attr,
	&dev_attr_falling.attr,
	NULL
};
ATTRIBUTE_GROUPS(kdkgpio_irq);

static int __init kdkgpio_irq_init(void)
{
	struct device *dev;
	int ret;

	kdkgpio_irq_lookup.table[0].chip_hwnum = line;
	gpiod_add_lookup_table(&kdkgpio_irq_lookup);

	kdkgpio_irq_pdev = platform_device_alloc(KDKGPIO_IRQ_DEV,
						 PLATFORM_DEVID_NONE);
	if (!kdkgpio_irq_pdev) {
		ret = -ENOMEM;
		goto err_lookup;
	}
	dev = &kdkgpio_irq_pdev->dev;
	dev->groups = kdkgpio_irq_groups;
	ret = platform_device_add(kdkgpio_irq_pdev);
	if (ret)
		goto err_put;

	kdkgpio_irq_desc = gpiod_get(dev, "button", GPIOD_IN);
	if (IS_ERR(kdkgpio_irq_desc)) {
		ret = PTR_ERR(kdkgpio_irq_desc);
		if (ret == -EPROBE_DEFER) {	/* the chip may come later */
			pr_err("no GPIO chip labelled kdkgpio\n");
			ret = -ENODEV;
		}
		goto err_del;
	}
	kdkgpio_irq_nr = gpiod_to_irq(kdkgpio_irq_desc);
	if (kdkgpio_irq_nr < 0) {
		ret = kdkgpio_irq_nr;
		goto err_gpio;
	}
	ret = request_irq(kdkgpio_irq_nr, kdkgpio_irq_handler,
			  IRQF_TRIGGER_RISING | IRQF_TRIGGER_FALLING,
			  KDKGPIO_IRQ_DEV, NULL);
	if (ret)
		goto err_gpio;
	pr_info("kdkgpio line %u, GPIO %d, IRQ %d\n", line,
		desc_to_gpio(kdkgpio_irq_desc), kdkgpio_irq_nr);
	return 0;

err_gpio:
	gpiod_put(kdkgpio_irq_desc);
err_del:
	platform_device_del(kdkgpio_irq_pdev);
err_put:
	platform_device_put(kdkgpio_irq_pdev);
err_lookup:
	gpiod_remove_lookup_table(&kdkgpio_irq_lookup);
	return ret;
}

static void __exit kdkgpio_irq_exit(void)
{
	free_irq(kdkgpio_irq_nr, NULL);
	gpiod_put(kdkgpio_irq_desc);
	platform_device_unregister(kdkgpio_irq_pdev);
	gpiod_remove_lookup_table(&kdkgpio_irq_lookup);
	pr_info("%d rising, %d falling\n", atomic_read(&kdkgpio_rising),
		atomic_read(&kdkgpio_falling));
}

module_init(kdkgpio_irq_init);
module_exit(kdkgpio_irq_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Counts the edges of a kdkgpio line through its interrupt");
