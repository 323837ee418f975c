/* SPDX-License-Identifier: GPL-2.0 */
/*
 * kdkchar_ring.h - the byte ring buffer of a kdkchar device, as pure logic:
 * where the next read or write goes and what it leaves behind. The driver
 * holds the device's mutex around these and does the copies to and from
 * user space itself; kdkchar_kunit.c tests them with no device at all.
 *
 * A read or a write of n bytes is at most two spans: @first bytes at one
 * offset, up to the end of the buffer, and the other n - @first bytes at
 * the start of the buffer.
 */
#ifndef KDKCHAR_RING_H
#define KDKCHAR_RING_H

#include <linux/compiler.h>
#include <linux/minmax.h>
#include <linux/string.h>
#include <linux/types.h>

struct kdkchar_ring {
	char *buf;
	size_t cap;	/* buffer size in bytes, at least 1 */
	size_t head;	/* index of the oldest byte */
	size_t len;	/* bytes stored, 0..cap */
};

/*
 * A read of up to @count bytes: returns how many it gets (0 when the ring
 * is empty); the first *@first of them are at buf + head, the rest at buf.
 */
static inline size_t kdkchar_ring_read_span(const struct kdkchar_ring *r,
					    size_t count, size_t *first)
{
	size_t n = min(count, r->len);

	*first = min(n, r->cap - r->head);
	return n;
}

/* Drops the @n oldest bytes (n <= len): a read of them succeeded. */
static inline void kdkchar_ring_consume(struct kdkchar_ring *r, size_t n)
{
	r->head = (r->head + n) % r->cap;
	WRITE_ONCE(r->len, r->len - n);	/* peeked at without the lock */
	if (r->len == 0)
		r->head = 0;
}

/*
 * A write of up to @count bytes: returns how many fit (0 when the ring is
 * full); the first *@first of them go to buf + *@tail, the rest to buf.
 */
static inline size_t kdkchar_ring_write_span(const struct kdkchar_ring *r,
					     size_t count, size_t *tail,
					     size_t *first)
{
	size_t n = min(count, r->cap - r->len);

	*tail = (r->head + r->len) % r->cap;
	*first = min(n, r->cap - *tail);
	return n;
}

/* Keeps the @n bytes a write stored where kdkchar_ring_write_span() said. */
static inline void kdkchar_ring_commit(struct kdkchar_ring *r, size_t n)
{
	WRITE_ONCE(r->len, r->len + n);
}

static inline void kdkchar_ring_clear(struct kdkchar_ring *r)
{
	r->head = 0;
	WRITE_ONCE(r->len, 0);
}

/*
 * Moves the stored bytes, oldest first, to @nbuf of @newcap bytes (at
 * least len) and makes it the ring's buffer; returns the old buffer, which
 * the caller frees.
 */
static inline char *kdkchar_ring_replace(struct kdkchar_ring *r, char *nbuf,
					 size_t newcap)
{
	size_t first = min(r->len, r->cap - r->head);
	char *old = r->buf;

	memcpy(nbuf, r->buf + r->head, first);
	memcpy(nbuf + first, r->buf, r->len - first);
	r->buf = nbuf;
	WRITE_ONCE(r->cap, newcap);
	r->head = 0;
	return old;
}

#endif /* KDKCHAR_RING_H */
