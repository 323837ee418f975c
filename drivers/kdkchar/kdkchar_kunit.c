// SPDX-License-Identifier: GPL-2.0
/*
 * kdkchar_kunit - KUnit suite for kdkchar's ring buffer (kdkchar_ring.h):
 * the spans of reads and writes, partial reads and writes, a full ring,
 * wraparound, and a resize that keeps the bytes in order.
 *
 * Built only against a kernel with CONFIG_KUNIT (see Kbuild). Loading it
 * runs the suite; its results are KTAP in the kernel log and in
 * /sys/kernel/debug/kunit/kdkchar_ring/results (`kdk test kdkchar`).
 */
#include <kunit/test.h>
#include <linux/module.h>

#include "kdkchar_ring.h"

#define CAP 8

/* A ring of CAP bytes holding @len bytes from index @head, buffer zeroed. */
static struct kdkchar_ring *ring_at(struct kunit *test, size_t head,
				    size_t len)
{
	struct kdkchar_ring *r = kunit_kzalloc(test, sizeof(*r), GFP_KERNEL);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, r);
	r->buf = kunit_kzalloc(test, CAP, GFP_KERNEL);
	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, r->buf);
	r->cap = CAP;
	r->head = head;
	r->len = len;
	return r;
}

/* The @n bytes at @p as a string, for KUNIT_EXPECT_STREQ(). */
static const char *str(struct kunit *test, const char *p, size_t n)
{
	char *s = kunit_kzalloc(test, n + 1, GFP_KERNEL);

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, s);
	return memcpy(s, p, n);
}

/* Writes @count bytes of @src the way kdkchar_write() does; bytes stored. */
static size_t put(struct kdkchar_ring *r, const char *src, size_t count)
{
	size_t tail, first;
	size_t n = kdkchar_ring_write_span(r, count, &tail, &first);

	memcpy(r->buf + tail, src, first);
	memcpy(r->buf, src + first, n - first);
	kdkchar_ring_commit(r, n);
	return n;
}

/* Reads up to @count bytes the way kdkchar_read() does; bytes read. */
static size_t get(struct kdkchar_ring *r, char *dst, size_t count)
{
	size_t first;
	size_t n = kdkchar_ring_read_span(r, count, &first);

	memcpy(dst, r->buf + r->head, first);
	memcpy(dst + first, r->buf, n - first);
	kdkchar_ring_consume(r, n);
	return n;
}

static void read_of_empty_ring_gets_nothing(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 0, 0);
	size_t first = 99;

	KUNIT_EXPECT_EQ(test, kdkchar_ring_read_span(r, 5, &first), 0);
	KUNIT_EXPECT_EQ(test, first, 0);
}

static void write_to_empty_ring_is_one_span(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 0, 0);
	size_t tail, first;

	KUNIT_EXPECT_EQ(test, kdkchar_ring_write_span(r, 5, &tail, &first), 5);
	KUNIT_EXPECT_EQ(test, tail, 0);
	KUNIT_EXPECT_EQ(test, first, 5);
	kdkchar_ring_commit(r, 5);
	KUNIT_EXPECT_EQ(test, r->len, 5);
	KUNIT_EXPECT_EQ(test, r->head, 0);
}

static void write_stores_what_fits(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 0, 0);

	KUNIT_EXPECT_EQ(test, put(r, "0123456789", 10), CAP);
	KUNIT_EXPECT_EQ(test, r->len, CAP);
	KUNIT_EXPECT_STREQ(test, str(test, r->buf, CAP), "01234567");
}

static void write_to_full_ring_stores_nothing(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 3, CAP);
	size_t tail, first;

	KUNIT_EXPECT_EQ(test, kdkchar_ring_write_span(r, 1, &tail, &first), 0);
	KUNIT_EXPECT_EQ(test, tail, 3);
	KUNIT_EXPECT_EQ(test, first, 0);
}

static void partial_read_leaves_the_rest(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 0, 0);
	char out[CAP] = {};

	put(r, "abcde", 5);
	KUNIT_EXPECT_EQ(test, get(r, out, 3), 3);
	KUNIT_EXPECT_STREQ(test, str(test, out, 3), "abc");
	KUNIT_EXPECT_EQ(test, r->head, 3);
	KUNIT_EXPECT_EQ(test, r->len, 2);
	KUNIT_EXPECT_EQ(test, get(r, out, 10), 2);
	KUNIT_EXPECT_STREQ(test, str(test, out, 2), "de");
}

static void read_to_empty_resets_head(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 5, 2);
	size_t tail, first;

	kdkchar_ring_consume(r, 2);
	KUNIT_EXPECT_EQ(test, r->len, 0);
	KUNIT_EXPECT_EQ(test, r->head, 0);
	/* the next write is one span again */
	KUNIT_EXPECT_EQ(test, kdkchar_ring_write_span(r, CAP, &tail, &first),
			CAP);
	KUNIT_EXPECT_EQ(test, tail, 0);
	KUNIT_EXPECT_EQ(test, first, CAP);
}

static void write_wraps_around_the_end(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 6, 1);
	size_t tail, first;

	KUNIT_EXPECT_EQ(test, kdkchar_ring_write_span(r, 4, &tail, &first), 4);
	KUNIT_EXPECT_EQ(test, tail, 7);
	KUNIT_EXPECT_EQ(test, first, 1);
	/* the tail itself wraps: bytes 6, 7 and 0 stored */
	r->len = 3;
	KUNIT_EXPECT_EQ(test, kdkchar_ring_write_span(r, 9, &tail, &first), 5);
	KUNIT_EXPECT_EQ(test, tail, 1);
	KUNIT_EXPECT_EQ(test, first, 5);
}

static void read_wraps_around_the_end(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 6, 5);
	size_t first;

	KUNIT_EXPECT_EQ(test, kdkchar_ring_read_span(r, 4, &first), 4);
	KUNIT_EXPECT_EQ(test, first, 2);
	kdkchar_ring_consume(r, 4);
	KUNIT_EXPECT_EQ(test, r->head, 2);
	KUNIT_EXPECT_EQ(test, r->len, 1);
}

static void bytes_come_out_in_order_across_the_end(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 0, 0);
	char out[CAP] = {};

	put(r, "abcdef", 6);
	get(r, out, 4);				/* head 4, "ef" left */
	KUNIT_EXPECT_EQ(test, put(r, "ghijkl", 6), 6);	/* fills the ring */
	KUNIT_EXPECT_EQ(test, r->len, CAP);
	KUNIT_EXPECT_STREQ(test, str(test, r->buf, CAP), "ijklefgh");
	KUNIT_EXPECT_EQ(test, get(r, out, CAP), CAP);
	KUNIT_EXPECT_STREQ(test, str(test, out, CAP), "efghijkl");
	KUNIT_EXPECT_EQ(test, r->len, 0);
}

static void clear_empties_the_ring(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 6, 4);

	kdkchar_ring_clear(r);
	KUNIT_EXPECT_EQ(test, r->len, 0);
	KUNIT_EXPECT_EQ(test, r->head, 0);
}

static void replace_keeps_bytes_in_order(struct kunit *test)
{
	struct kdkchar_ring *r = ring_at(test, 0, 0);
	char *nbuf = kunit_kzalloc(test, 2 * CAP, GFP_KERNEL);
	char *old = r->buf;
	char out[2 * CAP] = {};

	KUNIT_ASSERT_NOT_ERR_OR_NULL(test, nbuf);
	put(r, "abcdefgh", CAP);
	get(r, out, 5);
	put(r, "ijk", 3);			/* "fgh" at 5..7, "ijk" at 0..2 */
	KUNIT_EXPECT_PTR_EQ(test, kdkchar_ring_replace(r, nbuf, 2 * CAP), old);
	KUNIT_EXPECT_PTR_EQ(test, r->buf, nbuf);
	KUNIT_EXPECT_EQ(test, r->cap, 2 * CAP);
	KUNIT_EXPECT_EQ(test, r->head, 0);
	KUNIT_EXPECT_EQ(test, r->len, 6);
	KUNIT_EXPECT_STREQ(test, str(test, nbuf, 6), "fghijk");
	/* the room the larger buffer gives */
	KUNIT_EXPECT_EQ(test, put(r, "0123456789abcdef", 16), 2 * CAP - 6);
}

static struct kunit_case kdkchar_ring_cases[] = {
	KUNIT_CASE(read_of_empty_ring_gets_nothing),
	KUNIT_CASE(write_to_empty_ring_is_one_span),
	KUNIT_CASE(write_stores_what_fits),
	KUNIT_CASE(write_to_full_ring_stores_nothing),
	KUNIT_CASE(partial_read_leaves_the_rest),
	KUNIT_CASE(read_to_empty_resets_head),
	KUNIT_CASE(write_wraps_around_the_end),
	KUNIT_CASE(read_wraps_around_the_end),
	KUNIT_CASE(bytes_come_out_in_order_across_the_end),
	KUNIT_CASE(clear_empties_the_ring),
	KUNIT_CASE(replace_keeps_bytes_in_order),
	{}
};

static struct kunit_suite kdkchar_ring_suite = {
	.name = "kdkchar_ring",
	.test_cases = kdkchar_ring_cases,
};
kunit_test_suite(kdkchar_ring_suite);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("KUnit suite for kdkchar's ring buffer");
