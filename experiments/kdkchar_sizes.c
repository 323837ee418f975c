// SPDX-License-Identifier: GPL-2.0
/*
 * kdkchar_sizes.c - how large are the reads and writes kdkchar is asked for?
 *
 * kprobes on kdkchar_read() and kdkchar_write() record the requested byte
 * count (their third argument) in a log2 histogram per direction.
 */
#include <uapi/linux/ptrace.h>

struct slot_key {
	u32 write;	/* 0: read, 1: write */
	u32 slot;	/* log2 bucket of the size */
};

BPF_HISTOGRAM(sizes, struct slot_key);

static int record(size_t count, u32 write)
{
	struct slot_key key = { .write = write, .slot = bpf_log2l(count) };

	sizes.increment(key);
	return 0;
}

int on_read(struct pt_regs *ctx, void *file, char *buf, size_t count)
{
	return record(count, 0);
}

int on_write(struct pt_regs *ctx, void *file, const char *buf, size_t count)
{
	return record(count, 1);
}
