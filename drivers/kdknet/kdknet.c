// SPDX-License-Identifier: GPL-2.0
/*
 * kdknet - pairs of virtual Ethernet interfaces joined back to back.
 *
 * kdknet0 and kdknet1 (and kdknet2/kdknet3, ... with pairs=N) behave like
 * two network cards joined by a cable: a frame one of them transmits is
 * received by the other. It is the idea of LDD3's snull, written for
 * today's kernel:
 *  - alloc_etherdev() + register_netdev(), fixed locally administered MAC
 *    addresses set with eth_hw_addr_set();
 *  - ndo_start_xmit() hands the frame to the peer's receive queue and
 *    schedules the peer's NAPI context, as a NIC's interrupt would;
 *  - the NAPI poll function takes frames off that queue, within its
 *    budget, and passes them to the stack (eth_type_trans(),
 *    netif_receive_skb());
 *  - the carrier is on while both ends are up (like a cable with both
 *    link partners powered), off otherwise;
 *  - per-interface counters with u64_stats_sync, reported through
 *    ndo_get_stats64() (ip -s link, /sys/class/net/X/statistics) and
 *    through ethtool -S (get_sset_count/get_strings/get_ethtool_stats).
 *
 * The ends may be moved into different network namespaces; a frame that
 * crosses namespaces is scrubbed of its old namespace's state.
 *
 *	insmod kdknet.ko pairs=1
 *	ip link set kdknet0 up; ip link set kdknet1 up
 *	ethtool -S kdknet0
 */
#define pr_fmt(fmt) KBUILD_MODNAME ": " fmt

#include <linux/etherdevice.h>
#include <linux/ethtool.h>
#include <linux/init.h>
#include <linux/module.h>
#include <linux/netdevice.h>
#include <linux/skbuff.h>
#include <linux/u64_stats_sync.h>

#define KDKNET_MAX_PAIRS	8
/* frames waiting for the receiver's NAPI poll; more are dropped */
#define KDKNET_RXQ_MAX		1024

static int pairs = 1;
module_param(pairs, int, 0444);
MODULE_PARM_DESC(pairs, "number of interface pairs, 1..8 (default 1)");

/* Counters one context updates: tx by ndo_start_xmit, rx by the poll. */
struct kdknet_counters {
	u64_stats_t packets;
	u64_stats_t bytes;
	struct u64_stats_sync syncp;
};

struct kdknet_priv {
	struct net_device *dev;
	struct net_device *peer;	/* the other end; fixed for life */
	struct napi_struct napi;
	struct sk_buff_head rxq;	/* frames from the peer */
	struct kdknet_counters tx;
	struct kdknet_counters rx;
	atomic64_t tx_dropped;		/* sent while the peer was down */
	atomic64_t rx_dropped;		/* arrived with rxq full */
	atomic64_t napi_polls;
};

static struct net_device *kdknet_devs[2 * KDKNET_MAX_PAIRS];

static void kdknet_count(struct kdknet_counters *c, unsigned int len)
{
	u64_stats_update_begin(&c->syncp);
	u64_stats_inc(&c->packets);
	u64_stats_add(&c->bytes, len);
	u64_stats_update_end(&c->syncp);
}

static void kdknet_read(const struct kdknet_counters *c, u64 *packets,
			u64 *bytes)
{
	unsigned int start;

	do {
		start = u64_stats_fetch_begin(&c->syncp);
		*packets = u64_stats_read(&c->packets);
		*bytes = u64_stats_read(&c->bytes);
	} while (u64_stats_fetch_retry(&c->syncp, start));
}

/*
 * Transmit: the frame goes to the peer's receive queue, and the peer's
 * NAPI is scheduled. Called with bottom halves off and the queue's xmit
 * lock held, so tx counters have a single writer.
 */
static netdev_tx_t kdknet_xmit(struct sk_buff *skb, struct net_device *dev)
{
	struct kdknet_priv *priv = netdev_priv(dev);
	struct net_device *peer = priv->peer;
	struct kdknet_priv *ppriv = netdev_priv(peer);
	unsigned int len = skb->len;

	if (!netif_running(peer)) {
		atomic64_inc(&priv->tx_dropped);
		dev_kfree_skb_any(skb);
		return NETDEV_TX_OK;
	}
	/* a bound, read without the queue's lock */
	if (skb_queue_len_lockless(&ppriv->rxq) >= KDKNET_RXQ_MAX) {
		atomic64_inc(&ppriv->rx_dropped);
		dev_kfree_skb_any(skb);
		return NETDEV_TX_OK;
	}

	skb_tx_timestamp(skb);
	/* the sender's socket is done with it; no dst, conntrack, mark... */
	skb_orphan(skb);
	skb_scrub_packet(skb, !net_eq(dev_net(dev), dev_net(peer)));

	kdknet_count(&priv->tx, len);
	skb_queue_tail(&ppriv->rxq, skb);
	napi_schedule(&ppriv->napi);
	return NETDEV_TX_OK;
}

/* Receive, in softirq context: at most budget frames per call. */
static int kdknet_poll(struct napi_struct *napi, int budget)
{
	struct kdknet_priv *priv = container_of(napi, struct kdknet_priv, napi);
	struct sk_buff *skb;
	int done = 0;

	atomic64_inc(&priv->napi_polls);
	while (done < budget && (skb = skb_dequeue(&priv->rxq))) {
		unsigned int len = skb->len;

		skb->protocol = eth_type_trans(skb, priv->dev);
		kdknet_count(&priv->rx, len);
		netif_receive_skb(skb);
		done++;
	}
	/* a frame queued meanwhile reschedules us (napi_schedule's MISSED) */
	if (done < budget)
		napi_complete_done(napi, done);
	return done;
}

static int kdknet_open(struct net_device *dev)
{
	struct kdknet_priv *priv = netdev_priv(dev);

	napi_enable(&priv->napi);
	netif_start_queue(dev);
	if (netif_running(priv->peer)) {
		netif_carrier_on(dev);
		netif_carrier_on(priv->peer);
	}
	return 0;
}

static int kdknet_stop(struct net_device *dev)
{
	struct kdknet_priv *priv = netdev_priv(dev);

	netif_carrier_off(dev);
	netif_carrier_off(priv->peer);
	netif_stop_queue(dev);
	napi_disable(&priv->napi);
	skb_queue_purge(&priv->rxq);
	return 0;
}

static void kdknet_get_stats64(struct net_device *dev,
			       struct rtnl_link_stats64 *s)
{
	struct kdknet_priv *priv = netdev_priv(dev);

	kdknet_read(&priv->tx, &s->tx_packets, &s->tx_bytes);
	kdknet_read(&priv->rx, &s->rx_packets, &s->rx_bytes);
	s->tx_dropped = atomic64_read(&priv->tx_dropped);
	s->rx_dropped = atomic64_read(&priv->rx_dropped);
}

static const struct net_device_ops kdknet_netdev_ops = {
	.ndo_open		= kdknet_open,
	.ndo_stop		= kdknet_stop,
	.ndo_start_xmit		= kdknet_xmit,
	.ndo_get_stats64	= kdknet_get_stats64,
	.ndo_set_mac_address	= eth_mac_addr,
	.ndo_validate_addr	= eth_validate_addr,
};

/* ethtool -S: names and values in the same order */
static const char kdknet_stat_names[][ETH_GSTRING_LEN] = {
	"tx_packets", "tx_bytes", "tx_dropped",
	"rx_packets", "rx_bytes", "rx_dropped",
	"napi_polls",
};

static int kdknet_get_sset_count(struct net_device *dev, int sset)
{
	return sset == ETH_SS_STATS ? ARRAY_SIZE(kdknet_stat_names) :
				      -EOPNOTSUPP;
}

static void kdknet_get_strings(struct net_device *dev, u32 sset, u8 *data)
{
	if (sset == ETH_SS_STATS)
		memcpy(data, kdknet_stat_names, sizeof(kdknet_stat_names));
}

static void kdknet_get_ethtool_stats(struct net_device *dev,
				     struct ethtool_stats *stats, u64 *data)
{
	struct kdknet_priv *priv = netdev_priv(dev);

	kdknet_read(&priv->tx, &data[0], &data[1]);
	data[2] = atomic64_read(&priv->tx_dropped);
	kdknet_read(&priv->rx, &data[3], &data[4]);
	data[5] = atomic64_read(&priv->rx_dropped);
	data[6] = atomic64_read(&priv->napi_polls);
}

static void kdknet_get_drvinfo(struct net_device *dev,
			       struct ethtool_drvinfo *info)
{
	strscpy(info->driver, KBUILD_MODNAME, sizeof(info->driver));
	strscpy(info->bus_info, "virtual", sizeof(info->bus_info));
}

static const struct ethtool_ops kdknet_ethtool_ops = {
	.get_drvinfo		= kdknet_get_drvinfo,
	.get_link		= ethtool_op_get_link,
	.get_sset_count		= kdknet_get_sset_count,
	.get_strings		= kdknet_get_strings,
	.get_ethtool_stats	= kdknet_get_ethtool_stats,
};

/* kdknet<i>: MAC 02:6b:64:6e:00:<i> (locally administered, "kdn") */
static struct net_device *kdknet_create(int i)
{
	u8 addr[ETH_ALEN] = { 0x02, 0x6b, 0x64, 0x6e, 0x00, i };
	struct kdknet_priv *priv;
	struct net_device *dev;

	dev = alloc_etherdev(sizeof(*priv));
	if (!dev)
		return NULL;
	snprintf(dev->name, IFNAMSIZ, "kdknet%d", i);
	dev->netdev_ops = &kdknet_netdev_ops;
	dev->ethtool_ops = &kdknet_ethtool_ops;
	eth_hw_addr_set(dev, addr);

	priv = netdev_priv(dev);
	priv->dev = dev;
	skb_queue_head_init(&priv->rxq);
	u64_stats_init(&priv->tx.syncp);
	u64_stats_init(&priv->rx.syncp);
	netif_napi_add(dev, &priv->napi, kdknet_poll);
	netif_carrier_off(dev);
	return dev;
}

static void kdknet_free(struct net_device *dev)
{
	struct kdknet_priv *priv = netdev_priv(dev);

	skb_queue_purge(&priv->rxq);
	free_netdev(dev);	/* also deletes the NAPI context */
}

static void kdknet_cleanup(int n)
{
	int i;

	/*
	 * Unregister every device before freeing any: none may transmit to a
	 * freed peer. After a failed init some were never registered.
	 */
	for (i = 0; i < n; i++)
		if (kdknet_devs[i]->reg_state == NETREG_REGISTERED)
			unregister_netdev(kdknet_devs[i]);
	for (i = 0; i < n; i++)
		kdknet_free(kdknet_devs[i]);
}

static int __init kdknet_init(void)
{
	int i, n = 2 * pairs, ret;

	if (pairs < 1 || pairs > KDKNET_MAX_PAIRS) {
		pr_err("pairs=%d out of range 1..%d\n", pairs, KDKNET_MAX_PAIRS);
		return -EINVAL;
	}

	for (i = 0; i < n; i++) {
		kdknet_devs[i] = kdknet_create(i);
		if (!kdknet_devs[i]) {
			kdknet_cleanup(i);
			return -ENOMEM;
		}
	}
	for (i = 0; i < n; i++) {
		struct kdknet_priv *priv = netdev_priv(kdknet_devs[i]);

		priv->peer = kdknet_devs[i ^ 1];
	}
	for (i = 0; i < n; i++) {
		ret = register_netdev(kdknet_devs[i]);
		if (ret) {
			pr_err("registering kdknet%d failed: %d\n", i, ret);
			kdknet_cleanup(n);
			return ret;
		}
	}
	pr_info("%d pairs: kdknet0..kdknet%d\n", pairs, n - 1);
	return 0;
}

static void __exit kdknet_exit(void)
{
	kdknet_cleanup(2 * pairs);
	pr_info("unloaded\n");
}

module_init(kdknet_init);
module_exit(kdknet_exit);

MODULE_LICENSE("GPL");
MODULE_AUTHOR("kdk");
MODULE_DESCRIPTION("Pairs of virtual Ethernet interfaces joined back to back");
