// SPDX-License-Identifier: GPL-2.0
/*
 * kdkedu_irq_latency.c - from kdkedu's interrupt to the end of its bottom half.
 *
 * A kprobe on kdkedu_irq() (the hard handler) stamps the time; a
 * kretprobe on kdkedu_irq_thread() (the threaded bottom half, which
 * completes the waiting operation) puts the time since into a log2
 * histogram of microseconds.  One device, one interrupt in flight: one
 * stamp is enough.
 */
#include <uapi/linux/ptrace.h>

BPF_ARRAY(stamp, u64, 1);
BPF_HISTOGRAM(latency_us, u32, 64);
BPF_ARRAY(counts, u64, 2);	/* [0] interrupts, [1] bottom halves */

int on_irq(struct pt_regs *ctx)
{
	u32 zero = 0, irqs = 0;
	u64 now = bpf_ktime_get_ns();

	stamp.update(&zero, &now);
	counts.increment(irqs);
	return 0;
}

int on_done(struct pt_regs *ctx)
{
	u32 zero = 0, done = 1;
	u64 *start = stamp.lookup(&zero);

	counts.increment(done);
	if (!start || !*start)
		return 0;
	latency_us.increment(bpf_log2l((bpf_ktime_get_ns() - *start) / 1000));
	*start = 0;
	return 0;
}
