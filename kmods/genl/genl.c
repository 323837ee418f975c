// SPDX-License-Identifier: GPL-2.0
/*
 * genl - a generic netlink family: kernel <-> user space messages.
 *
 * The family "kdk_genl" (version 1) has two commands:
 *  - KDK_GENL_CMD_ECHO: the reply carries back the KDK_GENL_A_MSG string
 *    of the request;
 *  - KDK_GENL_CMD_COUNTER: adds the optional KDK_GENL_A_ADD (1..1000) to
 *    a counter kept by the module; the reply carries the counter's value
 *    in KDK_GENL_A_VALUE.
 *
 * It shows:
 *  - genl_register_family() with a family-wide attribute policy, so the
 *    core validates every request before a handler sees it (a string of
 *    bounded length, a u32 within a range: NLA_POLICY_RANGE);
 *  - strict validation for all commands (resv_start_op);
 *  - GENL_REQ_ATTR_CHECK() for a required attribute, with an extended ack
 *    naming the missing one;
 *  - building a reply: genlmsg_new(), genlmsg_put_reply(), nla_put_*(),
 *    genlmsg_end(), genlmsg_reply(), and unwinding on a full message.
 *
 * The attribute and command numbers are in genl_uapi.h, shared with
 * user space.
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/init.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <net/genetlink.h>

#include "genl_uapi.h"

static DEFINE_MUTEX(kdk_genl_lock);	/* protects the counter */
static u64 kdk_genl_counter;

static const struct nla_policy kdk_genl_policy[KDK_GENL_A_MAX + 1] = {
	[KDK_GENL_A_MSG]	= { .type = NLA_NUL_STRING,
				    .len = KDK_GENL_MSG_MAX },
	[KDK_GENL_A_ADD]	= NLA_POLICY_RANGE(NLA_U32, 1, KDK_GENL_ADD_MAX),
	/* a reply attribute: a request may not set it */
	[KDK_GENL_A_VALUE]	= { .type = NLA_REJECT },
};

static struct genl_family kdk_genl_family;

/* A reply to the request in info holding one attribute set by put(). */
static int kdk_genl_reply(struct genl_info *info, u8 cmd,
			  int (*put)(struct sk_buff *skb, const void *arg),
			  const void *arg)
{
	struct sk_buff *skb;
	void *hdr;
	int ret;

	skb = genlmsg_new(NLMSG_GOODSIZE, GFP_KERNEL);
	if (!skb)
		return -ENOMEM;
	hdr = genlmsg_put_reply(skb, info, &kdk_genl_family, 0, cmd);
	if (!hdr) {
		ret = -EMSGSIZE;
		goto err;
	}
	ret = put(skb, arg);
	if (ret)
		goto err;
	genlmsg_end(skb, hdr);
	return genlmsg_reply(skb, info);

err:
	nlmsg_free(skb);
	return ret;
}

static int put_msg(struct sk_buff *skb, const void *arg)
{
	return nla_put_string(skb, KDK_GENL_A_MSG, arg);
}

static int put_value(struct sk_buff *skb, const void *arg)
{
	return nla_put_u64_64bit(skb, KDK_GENL_A_VALUE, *(const u64 *)arg,
				 KDK_GENL_A_PAD);
}

static int kdk_genl_echo(struct sk_buff *skb, struct genl_info *info)
{
	if (GENL_REQ_ATTR_CHECK(info, KDK_GENL_A_MSG))
		return -EINVAL;
	return kdk_genl_reply(info, KDK_GENL_CMD_ECHO, put_msg,
			      nla_data(info->attrs[KDK_GENL_A_MSG]));
}

static int kdk_genl_count(struct sk_buff *skb, struct genl_info *info)
{
	u64 value;

	mutex_lock(&kdk_genl_lock);
	if (info->attrs[KDK_GENL_A_ADD])
		kdk_genl_counter += nla_get_u32(info->attrs[KDK_GENL_A_ADD]);
	value = kdk_genl_counter;
	mutex_unlock(&kdk_genl_lock);

	return kdk_genl_reply(info, KDK_GENL_CMD_COUNTER, put_value, &value);
}

static const struct genl_small_ops kdk_genl_ops[] = {
	{
		.cmd	= KDK_GENL_CMD_ECHO,
		.doit	= kdk_genl_echo,
	},
	{
		.cmd	= KDK_GENL_CMD_COUNTER,
		.doit	= kdk_genl_count,
	},
};

static struct genl_family kdk_genl_family __ro_after_init = {
	.name		= KDK_GENL_NAME,
	.version	= KDK_GENL_VERSION,
	.maxattr	= KDK_GENL_A_MAX,
	.policy		= kdk_genl_policy,
	.netnsok	= true,
	.module		= THIS_MODULE,
	.small_ops	= kdk_genl_ops,
	.n_small_ops	= ARRAY_SIZE(kdk_genl_ops),
	/* strict checks (no unknown attributes, no trailing data) for all */
	.resv_start_op	= KDK_GENL_CMD_COUNTER + 1,
};

static int __init kdk_genl_init(void)
{
	int ret;

	ret = genl_register_family(&kdk_genl_family);
	if (ret) {
		pr_err("genl_register_family failed: %d\n", ret);
		return ret;
	}
	pr_info("family %s registered, id %u\n", KDK_GENL_NAME,
		kdk_genl_family.id);
	return 0;
}

static void __exit kdk_genl_exit(void)
{
	genl_unregister_family(&kdk_genl_family);
	pr_info("unloaded\n");
}

module_init(kdk_genl_init);
module_exit(kdk_genl_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("A generic netlink family with an echo and a counter command");
