/* SPDX-License-Identifier: GPL-2.0 WITH Linux-syscall-note */
/*
 * The kdk_genl generic netlink family: names and numbers shared by the
 * module and user space (resolve the family id by name through the
 * "nlctrl" family, CTRL_CMD_GETFAMILY).
 */
#ifndef KDK_GENL_UAPI_H
#define KDK_GENL_UAPI_H

#define KDK_GENL_NAME		"kdk_genl"
#define KDK_GENL_VERSION	1

#define KDK_GENL_MSG_MAX	255	/* echo string, bytes without the NUL */
#define KDK_GENL_ADD_MAX	1000	/* largest KDK_GENL_A_ADD */

enum kdk_genl_cmd {
	KDK_GENL_CMD_UNSPEC,
	KDK_GENL_CMD_ECHO,	/* MSG -> MSG */
	KDK_GENL_CMD_COUNTER,	/* [ADD] -> VALUE */
};

enum kdk_genl_attr {
	KDK_GENL_A_UNSPEC,
	KDK_GENL_A_MSG,		/* NUL-terminated string, 0..255 chars */
	KDK_GENL_A_ADD,		/* u32, 1..1000 */
	KDK_GENL_A_VALUE,	/* u64, replies only */
	KDK_GENL_A_PAD,		/* alignment padding for VALUE */
	__KDK_GENL_A_MAX,
};

#define KDK_GENL_A_MAX	(__KDK_GENL_A_MAX - 1)

#endif /* KDK_GENL_UAPI_H */
