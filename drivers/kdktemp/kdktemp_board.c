// SPDX-License-Identifier: GPL-2.0
/*
 * kdktemp_board - declares a KDK-T1 on an I2C adapter found by name, as
 * board code does for a chip nothing can probe for.
 *
 * i2c_new_client_device() makes the client "kdktemp" at addr on the
 * adapter whose name is bus (by default i2c-stub's); the kdktemp driver
 * binds to it whenever both are there, in either order of loading.  The
 * adapter is held (i2c_get_adapter()) while the client exists, so the
 * adapter's module cannot go away under it; unloading this module
 * removes the client.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/device.h>
#include <linux/err.h>
#include <linux/i2c.h>
#include <linux/init.h>
#include <linux/module.h>
#include <linux/string.h>

static char *bus = "SMBus stub driver";
module_param(bus, charp, 0444);
MODULE_PARM_DESC(bus, "name of the I2C adapter the chip is on");

static ushort addr = 0x48;
module_param(addr, ushort, 0444);
MODULE_PARM_DESC(addr, "7-bit address of the chip (default 0x48)");

static struct i2c_adapter *kdktemp_adapter;
static struct i2c_client *kdktemp_client;

static int kdktemp_match(struct device *dev, void *data)
{
	struct i2c_adapter *adap = i2c_verify_adapter(dev);

	return adap && !strcmp(adap->name, data) ? adap->nr + 1 : 0;
}

static int __init kdktemp_board_init(void)
{
	struct i2c_board_info info = {
		I2C_BOARD_INFO("kdktemp", 0),
	};
	int nr;

	if (addr < 0x08 || addr > 0x77) {
		pr_err("addr=0x%x out of range 0x08..0x77\n", addr);
		return -EINVAL;
	}
	info.addr = addr;

	nr = i2c_for_each_dev(bus, kdktemp_match) - 1;
	kdktemp_adapter = nr < 0 ? NULL : i2c_get_adapter(nr);
	if (!kdktemp_adapter) {
		pr_err("no I2C adapter named \"%s\"\n", bus);
		return -ENODEV;
	}

	kdktemp_client = i2c_new_client_device(kdktemp_adapter, &info);
	if (IS_ERR(kdktemp_client)) {
		i2c_put_adapter(kdktemp_adapter);
		return PTR_ERR(kdktemp_client);
	}
	pr_info("kdktemp at 0x%02x on i2c-%d (%s)\n", addr, nr, bus);
	return 0;
}

static void __exit kdktemp_board_exit(void)
{
	i2c_unregister_device(kdktemp_client);
	i2c_put_adapter(kdktemp_adapter);
	pr_info("kdktemp removed\n");
}

module_init(kdktemp_board_init);
module_exit(kdktemp_board_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Board code declaring a KDK-T1 (kdktemp) on an I2C adapter");
