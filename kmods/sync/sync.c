// SPDX-License-Identifier: GPL-2.0
/*
 * sync - several threads hammering shared counters, without losing any
 * increment.
 *
 * It shows three ways to make "counter++" safe when many CPUs do it at
 * once:
 *  - a plain counter under a struct mutex (may sleep while waiting);
 *  - a plain counter under a spinlock_t (busy-waits; never sleep while
 *    holding it);
 *  - an atomic_t, which needs no lock at all.
 * and how to coordinate the threads:
 *  - kthread_create() for every thread first, then wake_up_process()
 *    for all, then one complete_all() on a "start" completion so they
 *    really start together;
 *  - each thread finishes with kthread_complete_and_exit() on its own
 *    completion, and the caller sleeps in wait_for_completion() until
 *    every thread is done.  (Plain complete() followed by "return"
 *    would let a thread still run our code after the waiter returned,
 *    and the module could be unloaded under its feet.)
 *
 * A run happens at load time and again whenever something is written to
 * /sys/kernel/debug/kdk_sync/run; the result of the last run is in
 * /sys/kernel/debug/kdk_sync/result and in the kernel log.
 *
 * Four locking bugs on purpose, for a kernel with lockdep and
 * DEBUG_ATOMIC_SLEEP (kdk kernel build --debug) to report:
 *  - writing "ab" to /sys/kernel/debug/kdk_sync/lock_order takes
 *    sync_lock_a then sync_lock_b (sync_take_ab()), writing "ba" takes
 *    them the other way round (sync_take_ba()).  Each write takes and
 *    releases both before it returns, so the two orders never overlap and
 *    nothing deadlocks; but two threads doing both at once could, and
 *    lockdep says so at the first "ba" after an "ab": "possible circular
 *    locking dependency detected".  Harmless on any kernel.
 *  - writing to /sys/kernel/debug/kdk_sync/sleep_in_atomic makes
 *    sync_sleep_in_atomic() allocate with GFP_KERNEL (which may sleep)
 *    under a spinlock: "BUG: sleeping function called from invalid
 *    context".  Only with CONFIG_DEBUG_ATOMIC_SLEEP (else -EOPNOTSUPP): on
 *    a kernel that cannot report it, the bug would just wait to bite.
 *  - writing to /sys/kernel/debug/kdk_sync/irq_unsafe takes
 *    sync_irq_lock with plain spin_lock() in process context
 *    (sync_irq_unsafe()), then has a timer take it in softirq context
 *    (sync_irq_timer()) and waits for it.  The two never overlap here, but
 *    a timer firing on the same CPU while process context holds the lock
 *    would spin forever: lockdep's "inconsistent lock state" (the fix is
 *    spin_lock_bh() in process context).
 *  - writing to /sys/kernel/debug/kdk_sync/hold takes sync_held_lock and
 *    returns to user space with it (sync_hold()); closing the file
 *    releases it, in the same task.  Lockdep: "lock held when returning to
 *    user space".
 * Lockdep reports one problem per boot, then turns itself off.
 *
 * And a data race, for KCSAN (kdk kernel build --kcsan): writing to
 * /sys/kernel/debug/kdk_sync/race has a thread and the writer each do
 * "counter++" SYNC_RACE_LOOPS times on sync_racy_counter with no lock
 * (sync_race_inc()).  KCSAN: "data-race in sync_race_inc".  On any kernel
 * the log says how many increments were lost ("race: 151234 of 200000
 * increments"); the counter is the module's own, so nothing else suffers.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/atomic.h>
#include <linux/completion.h>
#include <linux/debugfs.h>
#include <linux/err.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/kthread.h>
#include <linux/module.h>
#include <linux/moduleparam.h>
#include <linux/mutex.h>
#include <linux/sched.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/spinlock.h>
#include <linux/string.h>
#include <linux/timer.h>
#include <linux/uaccess.h>
#include <linux/version.h>

#if LINUX_VERSION_CODE < KERNEL_VERSION(5, 17, 0)
#define kthread_complete_and_exit complete_and_exit
#endif

#define SYNC_MAX_THREADS	64
#define SYNC_MAX_ITERATIONS	10000000

static unsigned int nthreads = 4;
module_param(nthreads, uint, 0444);
MODULE_PARM_DESC(nthreads, "Number of threads, 1..64 (default 4)");

static unsigned int iterations = 100000;
module_param(iterations, uint, 0444);
MODULE_PARM_DESC(iterations, "Increments per thread and counter, 1..10000000 (default 100000)");

/* the shared state the threads fight over */
static DEFINE_MUTEX(sync_counter_mutex);
static unsigned long sync_mutex_counter;	/* under sync_counter_mutex */
static DEFINE_SPINLOCK(sync_counter_spin);
static unsigned long sync_spin_counter;	/* under sync_counter_spin */
static atomic_t sync_atomic_counter;

/* one run at a time; also protects the result below */
static DEFINE_MUTEX(sync_run_lock);
static unsigned long sync_res_mutex, sync_res_spin, sync_res_atomic;
static unsigned long sync_res_expected;
static unsigned int sync_runs;

/* the two locks of the lock_order file, and the spinlock of sleep_in_atomic */
static DEFINE_MUTEX(sync_lock_a);
static DEFINE_MUTEX(sync_lock_b);
static DEFINE_SPINLOCK(sync_atomic_lock);

/* the irq_unsafe file's lock, its timer and the hold file's lock */
static DEFINE_SPINLOCK(sync_irq_lock);
static unsigned long sync_irq_count;	/* under sync_irq_lock */
static struct timer_list sync_timer;
static DECLARE_COMPLETION(sync_timer_done);
static DEFINE_MUTEX(sync_irq_run_lock);	/* one irq_unsafe write at a time */
static DEFINE_MUTEX(sync_held_lock);

/* the race file's counter: nothing protects it, which is the bug */
#define SYNC_RACE_LOOPS		100000
static unsigned long sync_racy_counter;
static DEFINE_MUTEX(sync_race_run_lock);	/* one race write at a time */

static struct completion sync_start;
static struct dentry *sync_dir;

struct sync_worker {
	struct task_struct *task;
	struct completion done;
};

static int sync_thread_fn(void *data)
{
	struct sync_worker *w = data;
	unsigned int i;

	wait_for_completion(&sync_start);

	for (i = 0; i < iterations; i++) {
		mutex_lock(&sync_counter_mutex);
		sync_mutex_counter++;
		mutex_unlock(&sync_counter_mutex);

		spin_lock(&sync_counter_spin);
		sync_spin_counter++;
		spin_unlock(&sync_counter_spin);

		atomic_inc(&sync_atomic_counter);

		if (!(i & 1023))
			cond_resched();
	}

	/* signals w->done and exits without returning into our code */
	kthread_complete_and_exit(&w->done, 0);
}

/* Runs one test; called with sync_run_lock held. */
static int sync_run(void)
{
	struct sync_worker *workers;
	unsigned int i, created;
	int ret = 0;

	workers = kcalloc(nthreads, sizeof(*workers), GFP_KERNEL);
	if (!workers)
		return -ENOMEM;

	sync_mutex_counter = 0;
	sync_spin_counter = 0;
	atomic_set(&sync_atomic_counter, 0);
	reinit_completion(&sync_start);

	for (created = 0; created < nthreads; created++) {
		struct sync_worker *w = &workers[created];

		init_completion(&w->done);
		w->task = kthread_create(sync_thread_fn, w, "kdk_sync/%u",
					 created);
		if (IS_ERR(w->task)) {
			ret = PTR_ERR(w->task);
			goto err_stop;
		}
	}

	for (i = 0; i < nthreads; i++)
		wake_up_process(workers[i].task);
	complete_all(&sync_start);	/* go! */
	for (i = 0; i < nthreads; i++)
		wait_for_completion(&workers[i].done);

	/* all threads have exited: no lock needed to read the counters */
	sync_res_mutex = sync_mutex_counter;
	sync_res_spin = sync_spin_counter;
	sync_res_atomic = (unsigned int)atomic_read(&sync_atomic_counter);
	sync_res_expected = (unsigned long)nthreads * iterations;
	sync_runs++;

	pr_info("mutex=%lu spinlock=%lu atomic=%lu expected=%lu\n",
		sync_res_mutex, sync_res_spin, sync_res_atomic,
		sync_res_expected);
	kfree(workers);
	return 0;

err_stop:
	/*
	 * The threads created so far were never woken up: kthread_stop()
	 * makes them exit without ever calling sync_thread_fn().
	 */
	while (created--)
		kthread_stop(workers[created].task);
	kfree(workers);
	return ret;
}

static int result_show(struct seq_file *m, void *v)
{
	mutex_lock(&sync_run_lock);
	seq_printf(m, "mutex=%lu spinlock=%lu atomic=%lu expected=%lu\n",
		   sync_res_mutex, sync_res_spin, sync_res_atomic,
		   sync_res_expected);
	mutex_unlock(&sync_run_lock);
	return 0;
}
DEFINE_SHOW_ATTRIBUTE(result);

static ssize_t run_write(struct file *file, const char __user *ubuf,
			 size_t count, loff_t *ppos)
{
	int ret;

	if (mutex_lock_interruptible(&sync_run_lock))
		return -ERESTARTSYS;
	ret = sync_run();
	mutex_unlock(&sync_run_lock);

	return ret ? ret : count;
}

static const struct file_operations run_fops = {
	.owner	= THIS_MODULE,
	.write	= run_write,
	.llseek	= noop_llseek,
};

static noinline void sync_take_ab(void)
{
	mutex_lock(&sync_lock_a);
	mutex_lock(&sync_lock_b);
	mutex_unlock(&sync_lock_b);
	mutex_unlock(&sync_lock_a);
}

static noinline void sync_take_ba(void)
{
	mutex_lock(&sync_lock_b);
	mutex_lock(&sync_lock_a);
	mutex_unlock(&sync_lock_a);
	mutex_unlock(&sync_lock_b);
}

static ssize_t lock_order_write(struct file *file, const char __user *ubuf,
				size_t count, loff_t *ppos)
{
	char buf[8];

	if (count == 0 || count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';

	if (sysfs_streq(buf, "ab"))
		sync_take_ab();
	else if (sysfs_streq(buf, "ba"))
		sync_take_ba();
	else
		return -EINVAL;
	pr_info("took the locks in the order %c%c\n", buf[0], buf[1]);
	return count;
}

static const struct file_operations lock_order_fops = {
	.owner	= THIS_MODULE,
	.write	= lock_order_write,
	.llseek	= noop_llseek,
};

static noinline int sync_sleep_in_atomic(void)
{
	void *p;

	spin_lock(&sync_atomic_lock);
	p = kmalloc(64, GFP_KERNEL);	/* the bug: GFP_KERNEL may sleep */
	spin_unlock(&sync_atomic_lock);
	kfree(p);
	return p ? 0 : -ENOMEM;
}

static ssize_t sleep_in_atomic_write(struct file *file,
				     const char __user *ubuf, size_t count,
				     loff_t *ppos)
{
	int ret;

	if (!IS_ENABLED(CONFIG_DEBUG_ATOMIC_SLEEP))
		return -EOPNOTSUPP;
	ret = sync_sleep_in_atomic();
	return ret ? ret : count;
}

static const struct file_operations sleep_in_atomic_fops = {
	.owner	= THIS_MODULE,
	.write	= sleep_in_atomic_write,
	.llseek	= noop_llseek,
};

static noinline void sync_irq_timer(struct timer_list *t)
{
	spin_lock(&sync_irq_lock);	/* softirq context */
	sync_irq_count++;
	spin_unlock(&sync_irq_lock);
	complete(&sync_timer_done);
}

static noinline int sync_irq_unsafe(void)
{
	spin_lock(&sync_irq_lock);	/* the bug: softirqs stay enabled */
	sync_irq_count++;
	spin_unlock(&sync_irq_lock);

	reinit_completion(&sync_timer_done);
	mod_timer(&sync_timer, jiffies + 1);
	if (!wait_for_completion_timeout(&sync_timer_done, 5 * HZ))
		return -ETIMEDOUT;
	return 0;
}

static ssize_t irq_unsafe_write(struct file *file, const char __user *ubuf,
				size_t count, loff_t *ppos)
{
	int ret;

	mutex_lock(&sync_irq_run_lock);
	ret = sync_irq_unsafe();
	mutex_unlock(&sync_irq_run_lock);
	return ret ? ret : count;
}

static const struct file_operations irq_unsafe_fops = {
	.owner	= THIS_MODULE,
	.write	= irq_unsafe_write,
	.llseek	= noop_llseek,
};

static noinline int sync_hold(struct file *file)
{
	if (file->private_data)
		return -EBUSY;	/* this file holds it already */
	mutex_lock(&sync_held_lock);	/* the bug: kept past the syscall */
	file->private_data = &sync_held_lock;
	return 0;
}

static ssize_t hold_write(struct file *file, const char __user *ubuf,
			  size_t count, loff_t *ppos)
{
	int ret = sync_hold(file);

	return ret ? ret : count;
}

static int hold_release(struct inode *inode, struct file *file)
{
	if (file->private_data)
		mutex_unlock(&sync_held_lock);
	return 0;
}

static const struct file_operations hold_fops = {
	.owner		= THIS_MODULE,
	.write		= hold_write,
	.release	= hold_release,
	.llseek		= noop_llseek,
};

static noinline void sync_race_inc(void)
{
	unsigned int i;

	for (i = 0; i < SYNC_RACE_LOOPS; i++) {
		sync_racy_counter++;	/* the bug: a plain, unlocked ++ */
		cpu_relax();	/* a barrier: one load and store per turn */
	}
}

static int sync_race_fn(void *data)
{
	sync_race_inc();
	kthread_complete_and_exit(data, 0);
}

static int sync_race(void)
{
	DECLARE_COMPLETION_ONSTACK(done);
	struct task_struct *t;

	sync_racy_counter = 0;
	t = kthread_run(sync_race_fn, &done, "kdk_sync/race");
	if (IS_ERR(t))
		return PTR_ERR(t);
	sync_race_inc();
	wait_for_completion(&done);
	pr_info("race: %lu of %u increments\n", sync_racy_counter,
		2 * SYNC_RACE_LOOPS);
	return 0;
}

static ssize_t race_write(struct file *file, const char __user *ubuf,
			  size_t count, loff_t *ppos)
{
	int ret;

	mutex_lock(&sync_race_run_lock);
	ret = sync_race();
	mutex_unlock(&sync_race_run_lock);
	return ret ? ret : count;
}

static const struct file_operations race_fops = {
	.owner	= THIS_MODULE,
	.write	= race_write,
	.llseek	= noop_llseek,
};

static int __init sync_init(void)
{
	int ret;

	if (nthreads < 1 || nthreads > SYNC_MAX_THREADS) {
		pr_err("nthreads=%u out of range 1..%d\n", nthreads,
		       SYNC_MAX_THREADS);
		return -EINVAL;
	}
	if (iterations < 1 || iterations > SYNC_MAX_ITERATIONS) {
		pr_err("iterations=%u out of range 1..%d\n", iterations,
		       SYNC_MAX_ITERATIONS);
		return -EINVAL;
	}

	init_completion(&sync_start);
	timer_setup(&sync_timer, sync_irq_timer, 0);
	pr_info("%u threads x %u iterations\n", nthreads, iterations);

	mutex_lock(&sync_run_lock);
	ret = sync_run();
	mutex_unlock(&sync_run_lock);
	if (ret)
		return ret;

	sync_dir = debugfs_create_dir("kdk_sync", NULL);
	debugfs_create_file("result", 0444, sync_dir, NULL, &result_fops);
	debugfs_create_file("run", 0200, sync_dir, NULL, &run_fops);
	debugfs_create_file("lock_order", 0200, sync_dir, NULL,
			    &lock_order_fops);
	debugfs_create_file("sleep_in_atomic", 0200, sync_dir, NULL,
			    &sleep_in_atomic_fops);
	debugfs_create_file("irq_unsafe", 0200, sync_dir, NULL,
			    &irq_unsafe_fops);
	debugfs_create_file("hold", 0200, sync_dir, NULL, &hold_fops);
	debugfs_create_file("race", 0200, sync_dir, NULL, &race_fops);
	return 0;
}

static void __exit sync_exit(void)
{
	/* waits for a run started through the "run" file to finish */
	debugfs_remove_recursive(sync_dir);
	del_timer_sync(&sync_timer);
	pr_info("exit runs=%u\n", sync_runs);
}

module_init(sync_init);
module_exit(sync_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Threads incrementing counters under a mutex, a spinlock and an atomic_t; a lock-order inversion, a sleep in atomic context, an irq-unsafe lock, a lock held into user space and a data race on demand");
