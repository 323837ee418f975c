// SPDX-License-Identifier: GPL-2.0
/*
 * trace.c - calls and latency of every function of one module (kdk trace).
 *
 * kdk appends one PROBE(i) line per function and defines NFUNCS; it then
 * attaches enter_<i> as a kprobe and leave_<i> as a kretprobe of function i.
 * Calls are counted on entry; the time from entry to return goes into a
 * total and a log2 histogram (nanoseconds) per function.
 */
#include <uapi/linux/ptrace.h>

struct start_key {
	u64 pid_tgid;
	u32 fn;
	u32 pad;	/* zero, so that no key has uninitialised bytes */
};

struct fn_stats {
	u64 calls;
	u64 ns;
};

struct hist_key {
	u32 fn;
	u32 slot;
};

BPF_HASH(start, struct start_key, u64, 10240);
BPF_ARRAY(stats, struct fn_stats, NFUNCS);
BPF_HISTOGRAM(latency, struct hist_key, NFUNCS * 64);

static __always_inline int enter(u32 fn)
{
	struct start_key key = { .pid_tgid = bpf_get_current_pid_tgid(), .fn = fn };
	struct fn_stats *s = stats.lookup(&fn);
	u64 now = bpf_ktime_get_ns();

	if (s)
		__sync_fetch_and_add(&s->calls, 1);
	start.update(&key, &now);
	return 0;
}

static __always_inline int leave(u32 fn)
{
	struct start_key key = { .pid_tgid = bpf_get_current_pid_tgid(), .fn = fn };
	struct hist_key hk = { .fn = fn };
	struct fn_stats *s;
	u64 *t0 = start.lookup(&key);
	u64 delta;

	if (!t0)
		return 0;	/* entered before the probes were attached */
	delta = bpf_ktime_get_ns() - *t0;
	start.delete(&key);
	s = stats.lookup(&fn);
	if (s)
		__sync_fetch_and_add(&s->ns, delta);
	hk.slot = bpf_log2l(delta);
	latency.increment(hk);
	return 0;
}

#define PROBE(i)							\
	int enter_##i(struct pt_regs *ctx) { return enter(i); }	\
	int leave_##i(struct pt_regs *ctx) { return leave(i); }
