// SPDX-License-Identifier: GPL-2.0
/*
 * workqueues - deferring work to a dedicated workqueue.
 *
 * It shows:
 *  - alloc_workqueue() for a workqueue of our own, queue_work() to hand
 *    it work items and destroy_workqueue() at unload, which first drains
 *    the queue: every item queued has run before the module goes away;
 *  - one dynamically allocated work item per request, embedding a
 *    struct work_struct (INIT_WORK) and freed by its own handler, which
 *    finds its container with container_of();
 *  - handlers run in process context in a kworker thread, so they may
 *    sleep (here msleep());
 *  - a debugfs file with its own read and write handlers.
 *
 * The module is called "workqueues" because the built-in workqueue code
 * already owns /sys/module/workqueue (its workqueue.* boot parameters),
 * so a module named "workqueue" could not be loaded.
 *
 *	echo 10 > /sys/kernel/debug/kdk_workqueues/queue
 *	cat /sys/kernel/debug/kdk_workqueues/queue
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/debugfs.h>
#include <linux/delay.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/kernel.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/slab.h>
#include <linux/uaccess.h>
#include <linux/workqueue.h>

#define WQ_MAX_PER_WRITE	1000

static unsigned int work_ms = 10;
module_param(work_ms, uint, 0444);
MODULE_PARM_DESC(work_ms, "How long each work item sleeps, 0..1000 ms (default 10)");

static struct workqueue_struct *wq_queue;
static struct dentry *wq_dir;
static atomic_long_t wq_queued = ATOMIC_LONG_INIT(0);
static atomic_long_t wq_done = ATOMIC_LONG_INIT(0);

struct wq_item {
	struct work_struct work;
	unsigned long seq;
};

/* process context, in a kworker thread: sleeping is allowed */
static void wq_handler(struct work_struct *work)
{
	struct wq_item *item = container_of(work, struct wq_item, work);

	if (work_ms)
		msleep(work_ms);
	pr_debug("item %lu done\n", item->seq);
	atomic_long_inc(&wq_done);
	kfree(item);
}

static ssize_t queue_read(struct file *file, char __user *ubuf,
			  size_t count, loff_t *ppos)
{
	char buf[64];
	long queued, done;
	int len;

	/* read done first: a racing item can only make queued >= done */
	done = atomic_long_read(&wq_done);
	queued = atomic_long_read(&wq_queued);
	len = scnprintf(buf, sizeof(buf), "queued %ld done %ld\n",
			queued, done);

	return simple_read_from_buffer(ubuf, count, ppos, buf, len);
}

static ssize_t queue_write(struct file *file, const char __user *ubuf,
			   size_t count, loff_t *ppos)
{
	struct wq_item *item;
	unsigned int n, i;
	int ret;

	ret = kstrtouint_from_user(ubuf, count, 10, &n);
	if (ret)
		return ret;
	if (n < 1 || n > WQ_MAX_PER_WRITE)
		return -EINVAL;

	for (i = 0; i < n; i++) {
		item = kmalloc(sizeof(*item), GFP_KERNEL);
		if (!item)
			return -ENOMEM;	/* those queued still run */
		INIT_WORK(&item->work, wq_handler);
		item->seq = atomic_long_inc_return(&wq_queued);
		queue_work(wq_queue, &item->work);
	}

	return count;
}

static const struct file_operations queue_fops = {
	.owner	= THIS_MODULE,
	.read	= queue_read,
	.write	= queue_write,
	.llseek	= default_llseek,
};

static int __init wq_init(void)
{
	if (work_ms > 1000) {
		pr_err("work_ms=%u out of range 0..1000\n", work_ms);
		return -EINVAL;
	}

	/*
	 * WQ_UNBOUND: items may run on any CPU, many at a time.
	 * max_active 0 means the default limit.
	 */
	wq_queue = alloc_workqueue("kdk_wq", WQ_UNBOUND, 0);
	if (!wq_queue)
		return -ENOMEM;

	wq_dir = debugfs_create_dir("kdk_workqueues", NULL);
	debugfs_create_file("queue", 0600, wq_dir, NULL, &queue_fops);

	pr_info("ready, work_ms=%u\n", work_ms);
	return 0;
}

static void __exit wq_exit(void)
{
	/* first stop new writes, which waits for writers still inside */
	debugfs_remove_recursive(wq_dir);
	/* drains: runs everything still queued, then frees the queue */
	destroy_workqueue(wq_queue);

	pr_info("exit queued=%ld done=%ld\n", atomic_long_read(&wq_queued),
		atomic_long_read(&wq_done));
}

module_init(wq_init);
module_exit(wq_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Deferred work on a dedicated workqueue, drained at unload");
