// SPDX-License-Identifier: GPL-2.0
/*
 * procfs - a /proc directory with a seq_file list and a command file.
 *
 * It shows:
 *  - proc_mkdir() and proc_remove() for a directory of entries;
 *  - a seq_file with explicit seq_operations (start/next/stop/show) that
 *    walks a linked list; ->start() takes the list mutex and ->stop()
 *    drops it, so a read sees a consistent list even while writers run,
 *    and output of any length is paged for us by seq_read();
 *  - a write-only entry with struct proc_ops that copies a command from
 *    user space, validates it, and returns -EINVAL / -E2BIG / -ENOENT /
 *    -ENOSPC for input it refuses.
 *
 *	echo "add apple" > /proc/kdk_procfs/ctl
 *	cat /proc/kdk_procfs/items
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/list.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#define PROCFS_DIR		"kdk_procfs"
#define PROCFS_MAX_WRITE	64	/* bytes, a longer write is -E2BIG */
#define PROCFS_MAX_WORD		32	/* bytes in one item */
#define PROCFS_MAX_ITEMS	1024

struct procfs_item {
	struct list_head node;
	char word[PROCFS_MAX_WORD + 1];
};

static LIST_HEAD(procfs_items);
static unsigned int procfs_nr_items;
static DEFINE_MUTEX(procfs_lock);	/* protects the two above */
static struct proc_dir_entry *procfs_dir;

/* ---- /proc/kdk_procfs/items: one item per line, oldest first ---- */

static void *items_start(struct seq_file *m, loff_t *pos)
{
	mutex_lock(&procfs_lock);
	return seq_list_start(&procfs_items, *pos);
}

static void *items_next(struct seq_file *m, void *v, loff_t *pos)
{
	return seq_list_next(v, &procfs_items, pos);
}

/* Called after every ->start(), even if ->start() returned NULL. */
static void items_stop(struct seq_file *m, void *v)
{
	mutex_unlock(&procfs_lock);
}

static int items_show(struct seq_file *m, void *v)
{
	struct procfs_item *item = list_entry(v, struct procfs_item, node);

	seq_printf(m, "%s\n", item->word);
	return 0;
}

static const struct seq_operations items_seq_ops = {
	.start	= items_start,
	.next	= items_next,
	.stop	= items_stop,
	.show	= items_show,
};

/* ---- /proc/kdk_procfs/ctl: "add WORD", "del WORD", "clear" ---- */

static int procfs_add(const char *word)
{
	struct procfs_item *item;

	item = kzalloc(sizeof(*item), GFP_KERNEL);
	if (!item)
		return -ENOMEM;
	strscpy(item->word, word, sizeof(item->word));

	mutex_lock(&procfs_lock);
	if (procfs_nr_items >= PROCFS_MAX_ITEMS) {
		mutex_unlock(&procfs_lock);
		kfree(item);
		return -ENOSPC;
	}
	list_add_tail(&item->node, &procfs_items);
	procfs_nr_items++;
	mutex_unlock(&procfs_lock);
	return 0;
}

/* Removes the oldest item equal to @word. */
static int procfs_del(const char *word)
{
	struct procfs_item *item;
	int ret = -ENOENT;

	mutex_lock(&procfs_lock);
	list_for_each_entry(item, &procfs_items, node) {
		if (!strcmp(item->word, word)) {
			list_del(&item->node);
			procfs_nr_items--;
			kfree(item);
			ret = 0;
			break;
		}
	}
	mutex_unlock(&procfs_lock);
	return ret;
}

static void procfs_clear(void)
{
	struct procfs_item *item, *tmp;

	mutex_lock(&procfs_lock);
	list_for_each_entry_safe(item, tmp, &procfs_items, node) {
		list_del(&item->node);
		kfree(item);
	}
	procfs_nr_items = 0;
	mutex_unlock(&procfs_lock);
}

/* Parses one NUL-terminated command; returns 0 or a negative errno. */
static int procfs_command(char *cmd)
{
	char *word;
	size_t len;

	cmd = strim(cmd);
	word = strpbrk(cmd, " \t");
	if (word) {
		*word++ = '\0';
		word = skip_spaces(word);
	}

	if (!strcmp(cmd, "clear")) {
		if (word)
			return -EINVAL;
		procfs_clear();
		return 0;
	}

	if (!word)
		return -EINVAL;
	len = strlen(word);
	/* exactly one word: no whitespace inside, not too long */
	if (!len || len > PROCFS_MAX_WORD || strpbrk(word, " \t\n\r\v\f"))
		return -EINVAL;

	if (!strcmp(cmd, "add"))
		return procfs_add(word);
	if (!strcmp(cmd, "del"))
		return procfs_del(word);
	return -EINVAL;
}

static ssize_t ctl_write(struct file *file, const char __user *ubuf,
			 size_t count, loff_t *ppos)
{
	char *kbuf;
	int ret;

	if (count == 0)
		return -EINVAL;
	if (count > PROCFS_MAX_WRITE)
		return -E2BIG;

	/* copies @count bytes and adds a terminating NUL */
	kbuf = memdup_user_nul(ubuf, count);
	if (IS_ERR(kbuf))
		return PTR_ERR(kbuf);

	/* an embedded NUL would silently cut the command short */
	if (strlen(kbuf) != count)
		ret = -EINVAL;
	else
		ret = procfs_command(kbuf);
	kfree(kbuf);

	return ret ? ret : count;
}

static const struct proc_ops ctl_proc_ops = {
	.proc_write	= ctl_write,
	.proc_lseek	= noop_llseek,
};

static int __init procfs_init(void)
{
	procfs_dir = proc_mkdir(PROCFS_DIR, NULL);
	if (!procfs_dir)
		return -ENOMEM;

	if (!proc_create_seq("items", 0444, procfs_dir, &items_seq_ops))
		goto err_remove;
	if (!proc_create("ctl", 0200, procfs_dir, &ctl_proc_ops))
		goto err_remove;

	pr_info("created /proc/%s\n", PROCFS_DIR);
	return 0;

err_remove:
	/* removes the directory and whatever was created inside it */
	proc_remove(procfs_dir);
	return -ENOMEM;
}

static void __exit procfs_exit(void)
{
	/* waits for readers and writers that are still inside our code */
	proc_remove(procfs_dir);
	procfs_clear();
	pr_info("removed /proc/%s\n", PROCFS_DIR);
}

module_init(procfs_init);
module_exit(procfs_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("procfs: a seq_file list and a validated command file");
