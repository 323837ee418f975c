// SPDX-License-Identifier: GPL-2.0
/*
 * sysfs - a kobject with read/write and read-only attributes.
 *
 * It shows:
 *  - kobject_create_and_add() to make a directory, here below
 *    /sys/kernel (kernel_kobj), and kobject_put() to remove it;
 *  - struct kobj_attribute with ->show() and ->store(), grouped in an
 *    attribute_group and created in one go with sysfs_create_group();
 *  - sysfs_emit() to print a value (one value per file, ending in '\n');
 *  - validating writes: ->store() returns -EINVAL for input it refuses
 *    and the number of bytes consumed when it accepts it;
 *  - a mutex protecting state shared by all the attribute handlers;
 *  - sysfs_notify() so poll()/select() on "value" wakes up on a change.
 *
 *	echo 42 > /sys/kernel/kdk_sysfs/value
 *	cat /sys/kernel/kdk_sysfs/writes
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/kobject.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/string.h>
#include <linux/sysfs.h>

#define KDK_SYSFS_VALUE_MAX	1000
#define KDK_SYSFS_NAME_MAX	31	/* characters, without the NUL */

static struct kobject *kdk_sysfs_kobj;

static DEFINE_MUTEX(kdk_sysfs_lock);	/* protects the three below */
static int kdk_sysfs_value;
static char kdk_sysfs_name[KDK_SYSFS_NAME_MAX + 1] = "kdk";
/* successful writes to value or name */
static unsigned long kdk_sysfs_writes;

static ssize_t value_show(struct kobject *kobj, struct kobj_attribute *attr,
			  char *buf)
{
	int v;

	mutex_lock(&kdk_sysfs_lock);
	v = kdk_sysfs_value;
	mutex_unlock(&kdk_sysfs_lock);

	return sysfs_emit(buf, "%d\n", v);
}

static ssize_t value_store(struct kobject *kobj, struct kobj_attribute *attr,
			   const char *buf, size_t count)
{
	int v, ret;

	/* kstrtoint() accepts one trailing newline, as left by echo */
	ret = kstrtoint(buf, 10, &v);
	if (ret)
		return -EINVAL;
	if (v < 0 || v > KDK_SYSFS_VALUE_MAX)
		return -EINVAL;

	mutex_lock(&kdk_sysfs_lock);
	kdk_sysfs_value = v;
	kdk_sysfs_writes++;
	mutex_unlock(&kdk_sysfs_lock);

	sysfs_notify(kobj, NULL, "value");
	return count;
}

static ssize_t name_show(struct kobject *kobj, struct kobj_attribute *attr,
			 char *buf)
{
	ssize_t ret;

	mutex_lock(&kdk_sysfs_lock);
	ret = sysfs_emit(buf, "%s\n", kdk_sysfs_name);
	mutex_unlock(&kdk_sysfs_lock);

	return ret;
}

static ssize_t name_store(struct kobject *kobj, struct kobj_attribute *attr,
			  const char *buf, size_t count)
{
	size_t len = count, i;

	/* sysfs hands us a NUL-terminated copy; drop one trailing '\n' */
	if (len && buf[len - 1] == '\n')
		len--;
	if (len == 0 || len > KDK_SYSFS_NAME_MAX)
		return -EINVAL;
	/* printable ASCII only, 0x20 (space) to 0x7e (~) */
	for (i = 0; i < len; i++)
		if (buf[i] < ' ' || buf[i] > '~')
			return -EINVAL;

	mutex_lock(&kdk_sysfs_lock);
	memcpy(kdk_sysfs_name, buf, len);
	kdk_sysfs_name[len] = '\0';
	kdk_sysfs_writes++;
	mutex_unlock(&kdk_sysfs_lock);

	return count;
}

static ssize_t writes_show(struct kobject *kobj, struct kobj_attribute *attr,
			   char *buf)
{
	unsigned long n;

	mutex_lock(&kdk_sysfs_lock);
	n = kdk_sysfs_writes;
	mutex_unlock(&kdk_sysfs_lock);

	return sysfs_emit(buf, "%lu\n", n);
}

/* __ATTR_RW(x) wires x_show/x_store with mode 0644, __ATTR_RO 0444 */
static struct kobj_attribute value_attr = __ATTR_RW(value);
static struct kobj_attribute name_attr = __ATTR_RW(name);
static struct kobj_attribute writes_attr = __ATTR_RO(writes);

static struct attribute *kdk_sysfs_attrs[] = {
	&value_attr.attr,
	&name_attr.attr,
	&writes_attr.attr,
	NULL,
};

static const struct attribute_group kdk_sysfs_group = {
	.attrs = kdk_sysfs_attrs,
};

static int __init kdk_sysfs_init(void)
{
	int ret;

	kdk_sysfs_kobj = kobject_create_and_add("kdk_sysfs", kernel_kobj);
	if (!kdk_sysfs_kobj)
		return -ENOMEM;

	ret = sysfs_create_group(kdk_sysfs_kobj, &kdk_sysfs_group);
	if (ret)
		goto err_put;

	pr_info("created /sys/kernel/kdk_sysfs\n");
	return 0;

err_put:
	kobject_put(kdk_sysfs_kobj);
	return ret;
}

static void __exit kdk_sysfs_exit(void)
{
	/*
	 * Dropping the last reference removes the directory and its files;
	 * sysfs waits for handlers that are still running.
	 */
	kobject_put(kdk_sysfs_kobj);
	pr_info("removed /sys/kernel/kdk_sysfs\n");
}

module_init(kdk_sysfs_init);
module_exit(kdk_sysfs_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("sysfs: a kobject with validated read/write attributes");
