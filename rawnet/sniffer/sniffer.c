// SPDX-License-Identifier: GPL-2.0
/*
 * sniffer.c - count the frames a classic BPF filter lets through to an
 * AF_PACKET socket.
 *
 *   sniffer -i IFACE -p PORT [-t SECONDS] [-v]
 *
 * The filter (SO_ATTACH_FILTER) keeps IPv4 UDP datagrams to PORT, first
 * fragments only, whatever the length of the IP header; the kernel runs
 * it on every frame of IFACE, both ways, before a copy is queued to the
 * socket. Prints "ready" once the filter is on, then, at the end (after
 * SECONDS, or on SIGINT/SIGTERM, once it has read what was queued), how
 * many frames it read and what the kernel's PACKET_STATISTICS say. Needs
 * CAP_NET_RAW.
 */
#include <arpa/inet.h>
#include <errno.h>
#include <linux/filter.h>
#include <linux/if_ether.h>
#include <linux/if_packet.h>
#include <net/if.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
static unsigned char frame[65536];

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
}

static void usage(void)
{
	fprintf(stderr, "usage: sniffer -i IFACE -p PORT [-t SECONDS] [-v]\n");
	exit(2);
}

int main(int argc, char **argv)
{
	const char *ifname = NULL;
	int port = -1, seconds = 3600, verbose = 0, opt, fd;
	unsigned long matched = 0;
	struct tpacket_stats stats;
	socklen_t slen = sizeof(stats);
	struct sockaddr_ll sll = { .sll_family = AF_PACKET };
	struct timespec start, now;

	while ((opt = getopt(argc, argv, "i:p:t:v")) != -1) {
		switch (opt) {
		case 'i':
			ifname = optarg;
			break;
		case 'p':
			port = atoi(optarg);
			break;
		case 't':
			seconds = atoi(optarg);
			break;
		case 'v':
			verbose = 1;
			break;
		default:
			usage();
		}
	}
	if (!ifname || port < 0 || port > 65535)
		usage();

	struct sock_filter code[] = {
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 12),		/* EtherType */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, ETH_P_IP, 0, 8),
		BPF_STMT(BPF_LD | BPF_B | BPF_ABS, 23),		/* IP protocol */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, IPPROTO_UDP, 0, 6),
		BPF_STMT(BPF_LD | BPF_H | BPF_ABS, 20),		/* flags, offset */
		BPF_JUMP(BPF_JMP | BPF_JSET | BPF_K, 0x1fff, 4, 0),
		BPF_STMT(BPF_LDX | BPF_B | BPF_MSH, 14),	/* X = IHL * 4 */
		BPF_STMT(BPF_LD | BPF_H | BPF_IND, 16),		/* UDP dest port */
		BPF_JUMP(BPF_JMP | BPF_JEQ | BPF_K, (unsigned int)port, 0, 1),
		BPF_STMT(BPF_RET | BPF_K, 0x40000),		/* keep the frame */
		BPF_STMT(BPF_RET | BPF_K, 0),			/* drop it */
	};
	struct sock_fprog prog = {
		.len = sizeof(code) / sizeof(code[0]),
		.filter = code,
	};

	/*
	 * Protocol 0: the socket receives nothing until bind() names one, so
	 * no frame gets in before the filter is attached.
	 */
	fd = socket(AF_PACKET, SOCK_RAW, 0);
	if (fd < 0) {
		fprintf(stderr, "sniffer: socket(AF_PACKET): %s\n", strerror(errno));
		return 2;
	}
	if (setsockopt(fd, SOL_SOCKET, SO_ATTACH_FILTER, &prog, sizeof(prog))) {
		fprintf(stderr, "sniffer: SO_ATTACH_FILTER: %s\n", strerror(errno));
		return 2;
	}
	sll.sll_protocol = htons(ETH_P_ALL);
	sll.sll_ifindex = (int)if_nametoindex(ifname);
	if (!sll.sll_ifindex) {
		fprintf(stderr, "sniffer: %s: %s\n", ifname, strerror(errno));
		return 2;
	}
	if (bind(fd, (struct sockaddr *)&sll, sizeof(sll))) {
		fprintf(stderr, "sniffer: bind: %s\n", strerror(errno));
		return 2;
	}
	/* reading the statistics resets them: start from zero */
	getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &stats, &slen);
	signal(SIGINT, on_signal);
	signal(SIGTERM, on_signal);
	printf("ready\n");
	fflush(stdout);

	clock_gettime(CLOCK_MONOTONIC, &start);
	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		ssize_t n;

		clock_gettime(CLOCK_MONOTONIC, &now);
		if (stop || now.tv_sec - start.tv_sec >= seconds) {
			/* the end: what the kernel queued before it is read too */
			n = recv(fd, frame, sizeof(frame), MSG_DONTWAIT);
			if (n < 0)
				break;
		} else {
			if (poll(&pfd, 1, 100) <= 0)
				continue;
			n = recv(fd, frame, sizeof(frame), 0);
			if (n < 0)
				continue;
		}
		matched++;
		if (verbose && n >= 34)
			printf("frame %ld bytes from %u.%u.%u.%u\n", (long)n,
			       frame[26], frame[27], frame[28], frame[29]);
	}
	slen = sizeof(stats);
	if (getsockopt(fd, SOL_PACKET, PACKET_STATISTICS, &stats, &slen)) {
		fprintf(stderr, "sniffer: PACKET_STATISTICS: %s\n", strerror(errno));
		return 2;
	}
	printf("matched %lu\nkernel packets %u drops %u\n", matched,
	       stats.tp_packets, stats.tp_drops);
	close(fd);
	return 0;
}
