// SPDX-License-Identifier: GPL-2.0
/*
 * kunit_fail - a KUnit suite whose results are of every kind, for kdk's
 * own tests: a case that passes, one that fails with its diagnostic
 * lines, one that skips with its reason, and a parameterized case (its
 * parameters are subtests) with one failing parameter.
 */
#include <kunit/test.h>
#include <linux/module.h>

static void passes(struct kunit *test)
{
	KUNIT_EXPECT_EQ(test, 1 + 1, 2);
}

static void fails(struct kunit *test)
{
	int answer = 41;

	KUNIT_EXPECT_EQ(test, answer, 42);
}

static void skips(struct kunit *test)
{
	kunit_skip(test, "no hardware here");
}

static const int values[] = { 1, 2, 3 };

static void value_desc(const int *v, char *desc)
{
	snprintf(desc, KUNIT_PARAM_DESC_SIZE, "value %d", *v);
}

KUNIT_ARRAY_PARAM(values, values, value_desc);

static void odd(struct kunit *test)
{
	const int *v = test->param_value;

	KUNIT_EXPECT_EQ(test, *v % 2, 1);
}

static struct kunit_case kunit_fail_cases[] = {
	KUNIT_CASE(passes),
	KUNIT_CASE(fails),
	KUNIT_CASE(skips),
	KUNIT_CASE_PARAM(odd, values_gen_params),
	{}
};

static struct kunit_suite kunit_fail_suite = {
	.name = "kdk_kunit_fail",
	.test_cases = kunit_fail_cases,
};
kunit_test_suite(kunit_fail_suite);

MODULE_LICENSE("GPL");
MODULE_DESCRIPTION("A KUnit suite with a failing, a skipped and a parameterized case");
