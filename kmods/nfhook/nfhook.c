// SPDX-License-Identifier: GPL-2.0
/*
 * nfhook - a netfilter hook that counts, and drops or accepts, IPv4 TCP
 * and UDP packets by destination port.
 *
 * The rule set is the module parameter "rules", given at load time or
 * written later to /sys/module/nfhook/parameters/rules:
 *
 *	rules=udp:5000,udp:5001:accept,tcp:8080:drop
 *
 * A packet for this host (NF_INET_LOCAL_IN, after reassembly) is checked
 * against the rules in order; the first rule with its protocol and
 * destination port counts it and decides: drop (the default action) or
 * accept. /proc/kdk_nfhook shows each rule with its count. A new rule set
 * starts with zero counts.
 *
 * It shows:
 *  - nf_register_net_hook() in every network namespace, through
 *    pernet_operations (namespaces created later get the hook too);
 *  - reading the transport header safely with skb_header_pointer();
 *  - a rule set replaced while packets are being checked: readers use
 *    RCU, the writer publishes with rcu_assign_pointer() and frees the old
 *    set with kfree_rcu();
 *  - a module parameter with its own parser (module_param_cb);
 *  - a read-only procfs file (proc_create_single).
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/in.h>
#include <linux/init.h>
#include <linux/ip.h>
#include <linux/module.h>
#include <linux/mutex.h>
#include <linux/netfilter.h>
#include <linux/netfilter_ipv4.h>
#include <linux/proc_fs.h>
#include <linux/seq_file.h>
#include <linux/slab.h>
#include <linux/string.h>
#include <net/ip.h>
#include <net/net_namespace.h>

#define NFHOOK_MAX_RULES	16

struct nfhook_rule {
	u8 proto;		/* IPPROTO_TCP or IPPROTO_UDP */
	u16 port;		/* destination port, host order */
	bool accept;		/* else drop */
	atomic64_t hits;
};

struct nfhook_rules {
	struct rcu_head rcu;
	int n;
	struct nfhook_rule rule[];
};

static DEFINE_MUTEX(nfhook_lock);	/* serialises writers of nfhook_set */
static struct nfhook_rules __rcu *nfhook_set;

static const char *proto_name(u8 proto)
{
	return proto == IPPROTO_TCP ? "tcp" : "udp";
}

static unsigned int nfhook_hook(void *priv, struct sk_buff *skb,
				const struct nf_hook_state *state)
{
	struct nfhook_rules *set;
	__be16 _ports[2];
	const __be16 *ports;
	const struct iphdr *iph = ip_hdr(skb);
	unsigned int verdict = NF_ACCEPT;
	u16 dport;
	int i;

	if (iph->protocol != IPPROTO_TCP && iph->protocol != IPPROTO_UDP)
		return NF_ACCEPT;
	/* source and destination port lead both headers */
	ports = skb_header_pointer(skb, ip_hdrlen(skb), sizeof(_ports), _ports);
	if (!ports)
		return NF_ACCEPT;
	dport = ntohs(ports[1]);

	/* netfilter hooks run inside an RCU read-side section */
	set = rcu_dereference(nfhook_set);
	if (!set)
		return NF_ACCEPT;
	for (i = 0; i < set->n; i++) {
		struct nfhook_rule *r = &set->rule[i];

		if (r->proto == iph->protocol && r->port == dport) {
			atomic64_inc(&r->hits);
			verdict = r->accept ? NF_ACCEPT : NF_DROP;
			break;
		}
	}
	return verdict;
}

static const struct nf_hook_ops nfhook_ops = {
	.hook		= nfhook_hook,
	.pf		= NFPROTO_IPV4,
	.hooknum	= NF_INET_LOCAL_IN,
	.priority	= NF_IP_PRI_FILTER,
};

static int __net_init nfhook_net_init(struct net *net)
{
	return nf_register_net_hook(net, &nfhook_ops);
}

static void __net_exit nfhook_net_exit(struct net *net)
{
	nf_unregister_net_hook(net, &nfhook_ops);
}

static struct pernet_operations nfhook_net_ops = {
	.init	= nfhook_net_init,
	.exit	= nfhook_net_exit,
};

/* One rule, "PROTO:PORT[:ACTION]", into r; -EINVAL if malformed. */
static int parse_rule(char *s, struct nfhook_rule *r)
{
	char *proto = strsep(&s, ":");
	char *port = strsep(&s, ":");
	char *action = s;

	if (!port)
		return -EINVAL;
	if (!strcmp(proto, "tcp"))
		r->proto = IPPROTO_TCP;
	else if (!strcmp(proto, "udp"))
		r->proto = IPPROTO_UDP;
	else
		return -EINVAL;
	if (kstrtou16(port, 10, &r->port) || !r->port)
		return -EINVAL;
	if (!action || !strcmp(action, "drop"))
		r->accept = false;
	else if (!strcmp(action, "accept"))
		r->accept = true;
	else
		return -EINVAL;
	return 0;
}

/* "RULE[,RULE...]" (one trailing newline allowed) into a new set. */
static struct nfhook_rules *parse_rules(const char *val)
{
	struct nfhook_rules *set;
	char *buf, *s, *tok;
	int ret = 0;

	set = kzalloc(struct_size(set, rule, NFHOOK_MAX_RULES), GFP_KERNEL);
	buf = kstrdup(val, GFP_KERNEL);
	if (!set || !buf) {
		ret = -ENOMEM;
		goto out;
	}
	s = strim(buf);
	if (!*s)
		goto out;	/* no rules */
	/* an empty rule ("a,,b", a trailing comma) is malformed */
	while ((tok = strsep(&s, ","))) {
		if (set->n == NFHOOK_MAX_RULES) {
			ret = -E2BIG;
			break;
		}
		ret = parse_rule(tok, &set->rule[set->n]);
		if (ret)
			break;
		set->n++;
	}
out:
	kfree(buf);
	if (ret) {
		kfree(set);
		return ERR_PTR(ret);
	}
	return set;
}

static int rules_set(const char *val, const struct kernel_param *kp)
{
	struct nfhook_rules *set = parse_rules(val), *old;

	if (IS_ERR(set))
		return PTR_ERR(set);
	mutex_lock(&nfhook_lock);
	old = rcu_replace_pointer(nfhook_set, set,
				  lockdep_is_held(&nfhook_lock));
	mutex_unlock(&nfhook_lock);
	if (old)
		kfree_rcu(old, rcu);
	return 0;
}

static int rules_get(char *buf, const struct kernel_param *kp)
{
	const struct nfhook_rules *set;
	int i, len = 0;

	rcu_read_lock();
	set = rcu_dereference(nfhook_set);
	for (i = 0; set && i < set->n; i++)
		len += sysfs_emit_at(buf, len, "%s%s:%u:%s", i ? "," : "",
				     proto_name(set->rule[i].proto),
				     set->rule[i].port,
				     set->rule[i].accept ? "accept" : "drop");
	rcu_read_unlock();
	return len + sysfs_emit_at(buf, len, "\n");
}

static const struct kernel_param_ops rules_ops = {
	.set	= rules_set,
	.get	= rules_get,
};

module_param_cb(rules, &rules_ops, NULL, 0644);
MODULE_PARM_DESC(rules, "PROTO:PORT[:drop|accept],... (PROTO tcp or udp; at most 16)");

/* /proc/kdk_nfhook: "PROTO:PORT:ACTION HITS", one line per rule */
static int nfhook_show(struct seq_file *m, void *v)
{
	const struct nfhook_rules *set;
	int i;

	rcu_read_lock();
	set = rcu_dereference(nfhook_set);
	for (i = 0; set && i < set->n; i++)
		seq_printf(m, "%s:%u:%s %lld\n", proto_name(set->rule[i].proto),
			   set->rule[i].port,
			   set->rule[i].accept ? "accept" : "drop",
			   atomic64_read(&set->rule[i].hits));
	rcu_read_unlock();
	return 0;
}

static int __init nfhook_init(void)
{
	int ret;

	if (!proc_create_single("kdk_nfhook", 0444, NULL, nfhook_show))
		return -ENOMEM;
	ret = register_pernet_subsys(&nfhook_net_ops);
	if (ret) {
		remove_proc_entry("kdk_nfhook", NULL);
		return ret;
	}
	pr_info("hooked LOCAL_IN in every network namespace\n");
	return 0;
}

static void __exit nfhook_exit(void)
{
	/* no hook runs after this returns (it waits for an RCU grace period) */
	unregister_pernet_subsys(&nfhook_net_ops);
	remove_proc_entry("kdk_nfhook", NULL);
	/* under the lock: a write to rules may still be under way */
	mutex_lock(&nfhook_lock);
	kfree(rcu_replace_pointer(nfhook_set, NULL,
				  lockdep_is_held(&nfhook_lock)));
	mutex_unlock(&nfhook_lock);
	pr_info("unloaded\n");
}

module_init(nfhook_init);
module_exit(nfhook_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("A netfilter hook counting and dropping packets by port");
