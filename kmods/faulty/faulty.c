// SPDX-License-Identifier: GPL-2.0
/*
 * faulty - crash the kernel on purpose, to learn to read an oops.
 *
 * Writing to /sys/kernel/debug/kdk_faulty/trigger runs one of:
 *  "null" (or "1") - faulty_crash(): writes through a NULL pointer, which
 *                    gives "BUG: kernel NULL pointer dereference" and an
 *                    oops whose RIP is faulty_crash+0x.../0x... [faulty];
 *  "warn"          - faulty_warn(): WARN_ON(1), a warning with a stack
 *                    trace; the write then succeeds and the system goes on;
 *  "bug"           - faulty_bug(): BUG(), "kernel BUG at .../faulty.c:N";
 *  "lockup"        - faulty_lockup(): spins with preemption disabled and
 *                    never returns, until the soft lockup detector reports
 *                    "BUG: soft lockup - CPU#N stuck for Ns!".
 * Three memory bugs on objects of the module's own slab caches (kdk_faulty,
 * OBJ_SIZE bytes each), silent on a stock kernel and reported by SLUB's
 * debug checks (slub_debug=FZPU, kdk up --debug):
 *  "uaf"           - faulty_uaf(): writes into an object after freeing it,
 *                    in a cache of its own that it then destroys; freeing
 *                    the slab checks its objects: "Poison overwritten";
 *  "overflow"      - faulty_overflow(): writes one byte past the end of an
 *                    object, then frees it; the free checks the object's
 *                    red zone: "Redzone overwritten";
 *  "doublefree"    - faulty_doublefree(): frees an object twice; the second
 *                    free finds it on the free list: "Object already free"
 *                    (without slub_debug, the hardened free list catches a
 *                    double free in a row too: "kernel BUG at mm/slub.c").
 * With slub_debug, SLUB repairs what it found and the kernel goes on.
 * Two more for a kernel with UBSAN and kmemleak (kdk kernel build --debug):
 *  "shift"         - faulty_shift(): shifts an int by 32 bits, undefined
 *                    behaviour that UBSAN reports as shift-out-of-bounds
 *                    (the result is not used; harmless on any kernel);
 *  "leak"          - faulty_leak(): allocates an object and forgets it,
 *                    which kmemleak reports as unreferenced once it has
 *                    scanned memory (each write leaks OBJ_SIZE bytes).
 * Each function is noinline so that it keeps its own name in the call
 * trace instead of being folded into the write handler.
 *
 * With panic_on_oops=0 (the default) an oops kills only the writing
 * process and the kernel keeps running, tainted; with oops=panic or
 * panic_on_oops=1 the whole machine panics.
 *
 * The file is made with debugfs_create_file_unsafe(): the safe variant
 * counts every handler that is running so that removing the file can
 * wait for them, and a handler that dies in an oops never finishes, so
 * rmmod would then hang forever.  The unsafe variant only holds a
 * module reference while the file is open, and that is dropped when the
 * killed process' files are closed, so the module can still be removed.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/bug.h>
#include <linux/compiler.h>
#include <linux/debugfs.h>
#include <linux/fs.h>
#include <linux/init.h>
#include <linux/module.h>
#include <linux/preempt.h>
#include <linux/processor.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <linux/uaccess.h>

#define OBJ_SIZE 64

static struct dentry *faulty_dir;
static struct kmem_cache *faulty_cache;

static noinline void faulty_crash(void)
{
	int *ptr = NULL;

	pr_info("dereferencing a NULL pointer\n");
	/* WRITE_ONCE(): the compiler must really perform the store */
	WRITE_ONCE(*ptr, 42);
}

static noinline void faulty_warn(void)
{
	pr_info("triggering WARN_ON(1)\n");
	WARN_ON(1);
}

static noinline void faulty_bug(void)
{
	pr_info("triggering BUG()\n");
	BUG();
}

static noinline void faulty_lockup(void)
{
	pr_info("spinning with preemption disabled\n");
	preempt_disable();
	for (;;)
		cpu_relax();
}

/*
 * A cache with a user copy region is never merged with another cache of
 * the same size, so without slub_debug the bugs below only ever hit
 * faulty's own objects.  (A constructor would do that too, but SLUB does
 * not poison the free objects of a cache with a constructor.)
 */
static struct kmem_cache *faulty_cache_create(const char *name)
{
	return kmem_cache_create_usercopy(name, OBJ_SIZE, 0, 0, 0, OBJ_SIZE,
					  NULL);
}

static noinline int faulty_uaf(void)
{
	/*
	 * A cache of its own: destroying it frees its slab, and slub_debug
	 * checks every object of a slab it frees.  (kdk_faulty's slabs may
	 * hold objects that "overflow" left allocated, and are not freed.)
	 */
	struct kmem_cache *cache = faulty_cache_create("kdk_faulty_uaf");
	u8 *obj = cache ? kmem_cache_alloc(cache, GFP_KERNEL) : NULL;

	if (obj) {
		pr_info("writing into a freed object\n");
		kmem_cache_free(cache, obj);
		/*
		 * Near its end: a free object's first bytes hold KASAN's
		 * quarantine link and its middle SLUB's free pointer, and
		 * corrupting those would crash the kernel, not just report;
		 * its last byte is SLUB's end of poison (another message).
		 */
		WRITE_ONCE(obj[OBJ_SIZE - 2], 0x42);
	}
	kmem_cache_destroy(cache);
	return obj ? 0 : -ENOMEM;
}

static noinline int faulty_overflow(void)
{
	u8 *obj = kmem_cache_alloc(faulty_cache, GFP_KERNEL);
	size_t past_end = OBJ_SIZE;

	if (!obj)
		return -ENOMEM;
	pr_info("writing one byte past the end of an object\n");
	WRITE_ONCE(obj[past_end], 0x42);
	kmem_cache_free(faulty_cache, obj);
	return 0;
}

static noinline int faulty_doublefree(void)
{
	/*
	 * A second object keeps the slab in use, so that SLUB looks for the
	 * object on the free list (Linux 6.12 first checks the slab's count
	 * of objects in use, and a slab with none says only that).
	 */
	void *keep = kmem_cache_alloc(faulty_cache, GFP_KERNEL);
	void *obj = keep ? kmem_cache_alloc(faulty_cache, GFP_KERNEL) : NULL;

	if (!obj)
		goto out;
	pr_info("freeing an object twice\n");
	kmem_cache_free(faulty_cache, obj);
	kmem_cache_free(faulty_cache, obj);
out:
	if (keep)
		kmem_cache_free(faulty_cache, keep);
	return obj ? 0 : -ENOMEM;
}

static noinline void faulty_shift(void)
{
	/* READ_ONCE(): a count the compiler cannot see to be 32 */
	static int bits = 32;
	int one = 1;

	pr_info("shifting an int by %d bits\n", READ_ONCE(bits));
	one <<= READ_ONCE(bits);
	pr_info("result %d\n", one);
}

static noinline int faulty_leak(void)
{
	void *obj = kmalloc(OBJ_SIZE, GFP_KERNEL);

	if (!obj)
		return -ENOMEM;
	pr_info("leaking an object of %d bytes\n", OBJ_SIZE);
	return 0;
}

static ssize_t trigger_write(struct file *file, const char __user *ubuf,
			     size_t count, loff_t *ppos)
{
	char buf[16];
	int err = 0;

	if (count == 0 || count >= sizeof(buf))
		return -EINVAL;
	if (copy_from_user(buf, ubuf, count))
		return -EFAULT;
	buf[count] = '\0';

	/* sysfs_streq() ignores one trailing newline */
	if (sysfs_streq(buf, "null") || sysfs_streq(buf, "1"))
		faulty_crash();
	else if (sysfs_streq(buf, "warn"))
		faulty_warn();
	else if (sysfs_streq(buf, "bug"))
		faulty_bug();
	else if (sysfs_streq(buf, "lockup"))
		faulty_lockup();
	else if (sysfs_streq(buf, "uaf"))
		err = faulty_uaf();
	else if (sysfs_streq(buf, "overflow"))
		err = faulty_overflow();
	else if (sysfs_streq(buf, "doublefree"))
		err = faulty_doublefree();
	else if (sysfs_streq(buf, "shift"))
		faulty_shift();
	else if (sysfs_streq(buf, "leak"))
		err = faulty_leak();
	else
		return -EINVAL;

	return err ? err : count;
}

static const struct file_operations trigger_fops = {
	.owner	= THIS_MODULE,
	.open	= simple_open,
	.write	= trigger_write,
	.llseek	= noop_llseek,
};

static int __init faulty_init(void)
{
	faulty_cache = faulty_cache_create("kdk_faulty");
	if (!faulty_cache)
		return -ENOMEM;
	faulty_dir = debugfs_create_dir("kdk_faulty", NULL);
	debugfs_create_file_unsafe("trigger", 0200, faulty_dir, NULL,
				   &trigger_fops);
	pr_info("write null, warn, bug, lockup, uaf, overflow, doublefree, shift or leak to /sys/kernel/debug/kdk_faulty/trigger\n");
	return 0;
}

static void __exit faulty_exit(void)
{
	debugfs_remove_recursive(faulty_dir);
	kmem_cache_destroy(faulty_cache);
	pr_info("unloaded\n");
}

module_init(faulty_init);
module_exit(faulty_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Deliberate oops, WARN_ON, BUG, lockup and slab memory bugs from a debugfs file");
