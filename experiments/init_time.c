// SPDX-License-Identifier: GPL-2.0
/*
 * init_time.c - how long does each module's init take?
 *
 * do_init_module() runs a freshly loaded module's init function and the
 * work around it. A kprobe notes the start time and the module's name per
 * thread; the kretprobe adds the elapsed time to that module's entry.
 */
#include <uapi/linux/ptrace.h>
#include <linux/module.h>

/* MODULE_NAME_LEN as a number: bcc describes map types to Python as JSON
 * and cannot evaluate the sizeof() in the kernel's definition. */
#define NAME_LEN 56
_Static_assert(NAME_LEN == MODULE_NAME_LEN, "NAME_LEN must be MODULE_NAME_LEN");

struct name {
	char s[NAME_LEN];
};

struct pending {
	u64 start;
	struct name name;
};

struct total {
	u64 loads;
	u64 ns;
};

BPF_HASH(inflight, u64, struct pending);
BPF_HASH(init_ns, struct name, struct total);

int on_entry(struct pt_regs *ctx, struct module *mod)
{
	u64 id = bpf_get_current_pid_tgid();
	struct pending p = { .start = bpf_ktime_get_ns() };

	bpf_probe_read_kernel_str(p.name.s, sizeof(p.name.s), mod->name);
	inflight.update(&id, &p);
	return 0;
}

int on_return(struct pt_regs *ctx)
{
	u64 id = bpf_get_current_pid_tgid();
	struct pending *p = inflight.lookup(&id);
	struct total zero = {}, *t;

	if (!p)
		return 0;
	t = init_ns.lookup_or_try_init(&p->name, &zero);
	if (t) {
		__sync_fetch_and_add(&t->loads, 1);
		__sync_fetch_and_add(&t->ns, bpf_ktime_get_ns() - p->start);
	}
	inflight.delete(&id);
	return 0;
}
