// SPDX-License-Identifier: GPL-2.0
/*
 * kdktemp - an I2C client driver for the KDK-T1, a made-up LM75-like
 * temperature sensor, exposed through hwmon.
 *
 * It shows:
 *  - an i2c_driver with an i2c_device_id table, so it binds by name: from
 *    user space (echo kdktemp 0x48 > /sys/bus/i2c/devices/i2c-N/new_device)
 *    or from board code (i2c_new_client_device(), see kdktemp_board.c);
 *  - checking the adapter's functionality and the chip's identity in
 *    probe, refusing a chip that is not ours with -ENODEV;
 *  - devm_hwmon_device_register_with_info(): temp1_input, temp1_max and
 *    temp1_max_hyst under /sys/class/hwmon/hwmonN, nothing to undo in remove;
 *  - SMBus word registers sent MSB first (i2c_smbus_*_word_swapped()).
 *
 * The KDK-T1 register map (no hardware has it: i2c-stub plays the chip):
 *
 *	0x00 TEMP   word, read only  temperature
 *	0x02 THYST  word             hysteresis: temp1_max_hyst
 *	0x03 TOS    word             over-temperature limit: temp1_max
 *	0x07 ID     byte, read only  0xa1
 *
 * The word registers hold an 11-bit two's complement number of 0.125 degC
 * steps in their upper 11 bits, MSB first on the wire (as the LM75A):
 * 0x19 0x80 is 25.5 degC, 0xf3 0x60 is -12.625 degC.  The low 5 bits are
 * ignored when read and written as 0.
 */
#include <linux/bitops.h>
#include <linux/err.h>
#include <linux/hwmon.h>
#include <linux/i2c.h>
#include <linux/kernel.h>
#include <linux/minmax.h>
#include <linux/module.h>
#include <linux/version.h>

#define KDKTEMP_REG_TEMP	0x00
#define KDKTEMP_REG_THYST	0x02
#define KDKTEMP_REG_TOS		0x03
#define KDKTEMP_REG_ID		0x07
#define KDKTEMP_ID		0xa1

#define KDKTEMP_STEP		125	/* millidegrees Celsius per LSB */
#define KDKTEMP_SHIFT		5	/* the value is in bits 15..5 */
#define KDKTEMP_MIN		(-55000)	/* the limits' range */
#define KDKTEMP_MAX		125000

static long kdktemp_from_reg(u16 reg)
{
	return sign_extend32(reg >> KDKTEMP_SHIFT, 10) * KDKTEMP_STEP;
}

static u16 kdktemp_to_reg(long mc)
{
	mc = clamp_val(mc, KDKTEMP_MIN, KDKTEMP_MAX);
	return (u16)(DIV_ROUND_CLOSEST(mc, KDKTEMP_STEP) << KDKTEMP_SHIFT);
}

static u8 kdktemp_reg(u32 attr)
{
	switch (attr) {
	case hwmon_temp_max:
		return KDKTEMP_REG_TOS;
	case hwmon_temp_max_hyst:
		return KDKTEMP_REG_THYST;
	default:
		return KDKTEMP_REG_TEMP;
	}
}

static umode_t kdktemp_is_visible(const void *data,
				  enum hwmon_sensor_types type, u32 attr,
				  int channel)
{
	switch (attr) {
	case hwmon_temp_input:
		return 0444;
	case hwmon_temp_max:
	case hwmon_temp_max_hyst:
		return 0644;
	default:
		return 0;
	}
}

static int kdktemp_read(struct device *dev, enum hwmon_sensor_types type,
			u32 attr, int channel, long *val)
{
	struct i2c_client *client = dev_get_drvdata(dev);
	int ret;

	ret = i2c_smbus_read_word_swapped(client, kdktemp_reg(attr));
	if (ret < 0)
		return ret;
	*val = kdktemp_from_reg(ret);
	return 0;
}

static int kdktemp_write(struct device *dev, enum hwmon_sensor_types type,
			 u32 attr, int channel, long val)
{
	struct i2c_client *client = dev_get_drvdata(dev);

	return i2c_smbus_write_word_swapped(client, kdktemp_reg(attr),
					    kdktemp_to_reg(val));
}

/* not *const: 6.1's hwmon_chip_info.info points to non-const pointers */
static const struct hwmon_channel_info *kdktemp_info[] = {
	HWMON_CHANNEL_INFO(temp, HWMON_T_INPUT | HWMON_T_MAX |
			   HWMON_T_MAX_HYST),
	NULL
};

static const struct hwmon_ops kdktemp_ops = {
	.is_visible = kdktemp_is_visible,
	.read = kdktemp_read,
	.write = kdktemp_write,
};

static const struct hwmon_chip_info kdktemp_chip_info = {
	.ops = &kdktemp_ops,
	.info = kdktemp_info,
};

static int kdktemp_probe(struct i2c_client *client)
{
	struct device *hwmon;
	int id;

	if (!i2c_check_functionality(client->adapter,
				     I2C_FUNC_SMBUS_BYTE_DATA |
				     I2C_FUNC_SMBUS_WORD_DATA))
		return -EOPNOTSUPP;

	id = i2c_smbus_read_byte_data(client, KDKTEMP_REG_ID);
	if (id < 0)
		return id;
	if (id != KDKTEMP_ID) {
		dev_err(&client->dev, "chip id 0x%02x, not 0x%02x: no KDK-T1\n",
			id, KDKTEMP_ID);
		return -ENODEV;
	}

	hwmon = devm_hwmon_device_register_with_info(&client->dev, "kdktemp",
						     client,
						     &kdktemp_chip_info, NULL);
	if (IS_ERR(hwmon))
		return PTR_ERR(hwmon);
	dev_info(&client->dev, "KDK-T1 on %s, %s\n", client->adapter->name,
		 dev_name(hwmon));
	return 0;
}

static const struct i2c_device_id kdktemp_ids[] = {
	{ "kdktemp", 0 },
	{ }
};
MODULE_DEVICE_TABLE(i2c, kdktemp_ids);

static struct i2c_driver kdktemp_driver = {
	.driver = {
		.name = "kdktemp",
	},
#if LINUX_VERSION_CODE < KERNEL_VERSION(6, 3, 0)
	.probe_new = kdktemp_probe,	/* .probe took an i2c_device_id too */
#else
	.probe = kdktemp_probe,
#endif
	.id_table = kdktemp_ids,
};
module_i2c_driver(kdktemp_driver);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("I2C client driver for the KDK-T1 temperature sensor (hwmon)");
