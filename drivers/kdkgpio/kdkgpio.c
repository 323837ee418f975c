// SPDX-License-Identifier: GPL-2.0
/*
 * kdkgpio - a GPIO controller with nothing behind it: ngpio lines whose
 * input levels are set from debugfs, as if wired to the outside, and an
 * interrupt controller raising a line's interrupt on its edges.
 *
 * It shows:
 *  - a gpio_chip: get/set, direction in and out, get_direction; lines read
 *    and driven through the GPIO character device (/dev/gpiochipN), by
 *    kernel consumers (gpiod_get() through a lookup table naming the
 *    chip's label "kdkgpio") and by legacy GPIO numbers (base=);
 *  - an interrupt controller through the gpiolib irqchip helpers: an
 *    immutable irq_chip (IRQCHIP_IMMUTABLE, GPIOCHIP_IRQ_RESOURCE_HELPERS,
 *    gpiochip_enable_irq()/gpiochip_disable_irq() in unmask/mask) set in
 *    gc.irq, which makes the irq domain and gpiod_to_irq() work;
 *  - raising an interrupt from process context: a debugfs write is not in
 *    an interrupt, so it uses generic_handle_domain_irq_safe() (which
 *    disables local interrupts around the flow handler, handle_simple_irq)
 *    and then synchronize_irq(), so the write returns once the line's
 *    handlers, threaded ones too, have seen the edge;
 *  - a raw spinlock for the chip's state: irq_chip callbacks run under the
 *    irq descriptor's raw lock, so a sleeping or plain spinlock would be
 *    wrong there (lockdep says so on PREEMPT_RT); it is never held while
 *    a handler runs, as handlers read lines back through ->get().
 *
 * debugfs, /sys/kernel/debug/kdkgpio/line<N>: a write of 0 or 1 sets the
 * level outside the pin; a read gives the pin's level: the driven value of
 * an output, else the outside level.  Only inputs see the outside, and
 * only their edges (rising, falling or both, as requested) interrupt.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bitops.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/gpio/driver.h>
#include <linux/init.h>
#include <linux/interrupt.h>
#include <linux/irq.h>
#include <linux/irqdomain.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/spinlock.h>
#include <linux/uaccess.h>

#define KDKGPIO_MAX_LINES	32

static int base = -1;
module_param(base, int, 0444);
MODULE_PARM_DESC(base, "number of line 0 in the legacy GPIO numbers (-1: dynamic)");

static unsigned int ngpio = 8;
module_param(ngpio, uint, 0444);
MODULE_PARM_DESC(ngpio, "number of lines, 1..32 (default 8)");

static struct kdkgpio {
	struct gpio_chip gc;
	raw_spinlock_t lock;		/* protects the bitmaps below */
	unsigned long outside;		/* level applied outside each pin */
	unsigned long driven;		/* value an output line drives */
	unsigned long output;		/* direction: set for an output */
	unsigned long enabled;		/* interrupt unmasked */
	unsigned long rising;		/* interrupt on rising edges */
	unsigned long falling;		/* interrupt on falling edges */
	struct dentry *debugfs;
	u8 offsets[KDKGPIO_MAX_LINES];	/* debugfs files' private data */
} kdkgpio;

static int kdkgpio_level(struct kdkgpio *kg, unsigned int offset)
{
	return test_bit(offset, &kg->output) ? test_bit(offset, &kg->driven)
					      : test_bit(offset, &kg->outside);
}

static int kdkgpio_get(struct gpio_chip *gc, unsigned int offset)
{
	struct kdkgpio *kg = gpiochip_get_data(gc);
	unsigned long flags;
	int level;

	raw_spin_lock_irqsave(&kg->lock, flags);
	level = kdkgpio_level(kg, offset);
	raw_spin_unlock_irqrestore(&kg->lock, flags);
	return level;
}

static void kdkgpio_set(struct gpio_chip *gc, unsigned int offset, int value)
{
	struct kdkgpio *kg = gpiochip_get_data(gc);
	unsigned long flags;

	raw_spin_lock_irqsave(&kg->lock, flags);
	assign_bit(offset, &kg->driven, value);
	raw_spin_unlock_irqrestore(&kg->lock, flags);
}

static int kdkgpio_get_direction(struct gpio_chip *gc, unsigned int offset)
{
	struct kdkgpio *kg = gpiochip_get_data(gc);

	return test_bit(offset, &kg->output) ? GPIO_LINE_DIRECTION_OUT
					     : GPIO_LINE_DIRECTION_IN;
}

static int kdkgpio_direction_input(struct gpio_chip *gc, unsigned int offset)
{
	struct kdkgpio *kg = gpiochip_get_data(gc);
	unsigned long flags;

	raw_spin_lock_irqsave(&kg->lock, flags);
	clear_bit(offset, &kg->output);
	raw_spin_unlock_irqrestore(&kg->lock, flags);
	return 0;
}

static int kdkgpio_direction_output(struct gpio_chip *gc, unsigned int offset,
				    int value)
{
	struct kdkgpio *kg = gpiochip_get_data(gc);
	unsigned long flags;

	raw_spin_lock_irqsave(&kg->lock, flags);
	assign_bit(offset, &kg->driven, value);
	set_bit(offset, &kg->output);
	raw_spin_unlock_irqrestore(&kg->lock, flags);
	return 0;
}

static void kdkgpio_irq_mask(struct irq_data *d)
{
	struct gpio_chip *gc = irq_data_get_irq_chip_data(d);
	struct kdkgpio *kg = gpiochip_get_data(gc);
	irq_hw_number_t hwirq = irqd_to_hwirq(d);

	clear_bit(hwirq, &kg->enabled);
	gpiochip_disable_irq(gc, hwirq);
}

static void kdkgpio_irq_unmask(struct irq_data *d)
{
	struct gpio_chip *gc = irq_data_get_irq_chip_data(d);
	struct kdkgpio *kg = gpiochip_get_data(gc);
	irq_hw_number_t hwirq = irqd_to_hwirq(d);

	gpiochip_enable_irq(gc, hwirq);
	set_bit(hwirq, &kg->enabled);
}

static int kdkgpio_irq_set_type(struct irq_data *d, unsigned int type)
{
	struct gpio_chip *gc = irq_data_get_irq_chip_data(d);
	struct kdkgpio *kg = gpiochip_get_data(gc);
	irq_hw_number_t hwirq = irqd_to_hwirq(d);
	unsigned long flags;

	if (type & ~IRQ_TYPE_EDGE_BOTH)
		return -EINVAL;	/* no level interrupts */
	raw_spin_lock_irqsave(&kg->lock, flags);
	assign_bit(hwirq, &kg->rising, type & IRQ_TYPE_EDGE_RISING);
	assign_bit(hwirq, &kg->falling, type & IRQ_TYPE_EDGE_FALLING);
	raw_spin_unlock_irqrestore(&kg->lock, flags);
	return 0;
}

static const struct irq_chip kdkgpio_irq_chip = {
	.name = "kdkgpio",
	.irq_mask = kdkgpio_irq_mask,
	.irq_unmask = kdkgpio_irq_unmask,
	.irq_set_type = kdkgpio_irq_set_type,
	.flags = IRQCHIP_IMMUTABLE | IRQCHIP_SKIP_SET_WAKE,
	GPIOCHIP_IRQ_RESOURCE_HELPERS,
};

/* Sets the level outside line @offset; raises its interrupt on an edge. */
static void kdkgpio_apply(struct kdkgpio *kg, unsigned int offset, bool level)
{
	unsigned long flags;
	bool edge;

	raw_spin_lock_irqsave(&kg->lock, flags);
	edge = test_bit(offset, &kg->outside) != level &&
	       !test_bit(offset, &kg->output) &&
	       test_bit(offset, &kg->enabled) &&
	       test_bit(offset, level ? &kg->rising : &kg->falling);
	assign_bit(offset, &kg->outside, level);
	raw_spin_unlock_irqrestore(&kg->lock, flags);

	if (edge) {
		generic_handle_domain_irq_safe(kg->gc.irq.domain, offset);
		synchronize_irq(irq_find_mapping(kg->gc.irq.domain, offset));
	}
}

static ssize_t kdkgpio_line_read(struct file *file, char __user *buf,
				 size_t count, loff_t *ppos)
{
	unsigned int offset = *(u8 *)file->private_data;
	char text[2] = { '0' + kdkgpio_get(&kdkgpio.gc, offset), '\n' };

	return simple_read_from_buffer(buf, count, ppos, text, sizeof(text));
}

static ssize_t kdkgpio_line_write(struct file *file, const char __user *buf,
				  size_t count, loff_t *ppos)
{
	unsigned int offset = *(u8 *)file->private_data;
	bool level;
	int ret;

	ret = kstrtobool_from_user(buf, count, &level);
	if (ret)
		return ret;
	kdkgpio_apply(&kdkgpio, offset, level);
	return count;
}

static const struct file_operations kdkgpio_line_fops = {
	.owner = THIS_MODULE,
	.open = simple_open,
	.read = kdkgpio_line_read,
	.write = kdkgpio_line_write,
	.llseek = default_llseek,
};

static int __init kdkgpio_init(void)
{
	struct kdkgpio *kg = &kdkgpio;
	struct gpio_irq_chip *girq;
	char name[8];
	unsigned int i;
	int ret;

	if (ngpio < 1 || ngpio > KDKGPIO_MAX_LINES) {
		pr_err("ngpio=%u out of range 1..%d\n", ngpio, KDKGPIO_MAX_LINES);
		return -EINVAL;
	}
	raw_spin_lock_init(&kg->lock);
	kg->gc = (struct gpio_chip) {
		.label = "kdkgpio",
		.owner = THIS_MODULE,
		.base = base,
		.ngpio = ngpio,
		.get = kdkgpio_get,
		.set = kdkgpio_set,
		.get_direction = kdkgpio_get_direction,
		.direction_input = kdkgpio_direction_input,
		.direction_output = kdkgpio_direction_output,
	};
	girq = &kg->gc.irq;
	gpio_irq_chip_set_chip(girq, &kdkgpio_irq_chip);
	girq->handler = handle_simple_irq;	/* no ack: nothing to clear */
	girq->default_type = IRQ_TYPE_NONE;

	ret = gpiochip_add_data(&kg->gc, kg);
	if (ret) {
		pr_err("gpiochip_add_data: %d\n", ret);
		return ret;
	}

	kg->debugfs = debugfs_create_dir("kdkgpio", NULL);
	for (i = 0; i < ngpio; i++) {
		kg->offsets[i] = i;
		snprintf(name, sizeof(name), "line%u", i);
		debugfs_create_file(name, 0600, kg->debugfs, &kg->offsets[i],
				    &kdkgpio_line_fops);
	}
	pr_info("%u lines at GPIO %d..%d\n", ngpio, kg->gc.base,
		kg->gc.base + ngpio - 1);
	return 0;
}

static void __exit kdkgpio_exit(void)
{
	debugfs_remove_recursive(kdkgpio.debugfs);
	gpiochip_remove(&kdkgpio.gc);
	pr_info("unloaded\n");
}

module_init(kdkgpio_init);
module_exit(kdkgpio_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Software GPIO controller with edge interrupts, lines set from debugfs");
