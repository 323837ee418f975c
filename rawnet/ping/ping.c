// SPDX-License-Identifier: GPL-2.0
/*
 * ping.c - an ICMP echo client over a raw socket, checksum computed by hand.
 *
 *   ping [-c COUNT] [-s SIZE] [-W SECONDS] DEST   echo requests to DEST
 *   ping --checksum HEX                           print the checksum of HEX
 *
 * Builds each echo request (type 8) itself, sends it on a SOCK_RAW socket
 * of protocol ICMP (the kernel adds the IP header), and reads what the
 * socket receives: whole IP packets, of which it keeps the echo replies
 * (type 0) carrying its identifier. Needs CAP_NET_RAW (root in the guest).
 */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/ip.h>
#include <netinet/ip_icmp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#define MAX_PAYLOAD 1400

/* The Internet checksum (RFC 1071): one's complement of the one's
 * complement sum of the data taken as big-endian 16-bit words. */
static uint16_t inet_checksum(const uint8_t *data, size_t len)
{
	uint32_t sum = 0;
	size_t i;

	for (i = 0; i + 1 < len; i += 2)
		sum += (uint32_t)data[i] << 8 | data[i + 1];
	if (len & 1)
		sum += (uint32_t)data[len - 1] << 8;	/* pad with a zero byte */
	while (sum >> 16)
		sum = (sum & 0xffff) + (sum >> 16);
	return (uint16_t)~sum;
}

static double now_ms(void)
{
	struct timespec ts;

	clock_gettime(CLOCK_MONOTONIC, &ts);
	return ts.tv_sec * 1e3 + ts.tv_nsec / 1e6;
}

static int print_checksum(const char *hex)
{
	uint8_t buf[4096];
	size_t n = strlen(hex) / 2, i;
	unsigned int byte;

	if (strlen(hex) % 2 || n > sizeof(buf)) {
		fprintf(stderr, "ping: --checksum wants an even number of hex digits\n");
		return 2;
	}
	for (i = 0; i < n; i++) {
		if (sscanf(hex + 2 * i, "%2x", &byte) != 1) {
			fprintf(stderr, "ping: not hex: %s\n", hex);
			return 2;
		}
		buf[i] = (uint8_t)byte;
	}
	printf("%04x\n", inet_checksum(buf, n));
	return 0;
}

/* Wait up to @timeout_ms for the echo reply to (@id, @seq); its size in
 * bytes of ICMP data, or -1. Other ICMP messages are skipped. */
static int wait_reply(int fd, uint16_t id, uint16_t seq, int timeout_ms,
		      struct sockaddr_in *from)
{
	double deadline = now_ms() + timeout_ms;
	uint8_t pkt[IP_MAXPACKET];

	for (;;) {
		struct pollfd pfd = { .fd = fd, .events = POLLIN };
		int left = (int)(deadline - now_ms());
		socklen_t flen = sizeof(*from);
		const struct icmphdr *icmp;
		const struct iphdr *ip;
		ssize_t n;
		size_t hlen;

		if (left <= 0 || poll(&pfd, 1, left) <= 0)
			return -1;
		n = recvfrom(fd, pkt, sizeof(pkt), 0, (struct sockaddr *)from,
			     &flen);
		if (n < 0)
			return -1;
		ip = (const struct iphdr *)pkt;
		hlen = ip->ihl * 4u;
		if ((size_t)n < hlen + sizeof(*icmp))
			continue;
		icmp = (const struct icmphdr *)(pkt + hlen);
		if (icmp->type != ICMP_ECHOREPLY || ntohs(icmp->un.echo.id) != id ||
		    ntohs(icmp->un.echo.sequence) != seq)
			continue;
		if (inet_checksum(pkt + hlen, n - hlen) != 0) {
			fprintf(stderr, "ping: reply %u with a bad checksum\n", seq);
			continue;
		}
		return (int)(n - hlen - sizeof(*icmp));
	}
}

int main(int argc, char **argv)
{
	int count = 1, size = 56, timeout_s = 2, received = 0, opt, fd, i;
	uint8_t req[sizeof(struct icmphdr) + MAX_PAYLOAD];
	struct icmphdr *icmp = (struct icmphdr *)req;
	struct sockaddr_in dest = { .sin_family = AF_INET };
	uint16_t id = getpid() & 0xffff;

	if (argc == 3 && !strcmp(argv[1], "--checksum"))
		return print_checksum(argv[2]);
	while ((opt = getopt(argc, argv, "c:s:W:")) != -1) {
		switch (opt) {
		case 'c':
			count = atoi(optarg);
			break;
		case 's':
			size = atoi(optarg);
			break;
		case 'W':
			timeout_s = atoi(optarg);
			break;
		default:
			goto usage;
		}
	}
	if (optind != argc - 1 || count < 1 || size < 0 || size > MAX_PAYLOAD ||
	    inet_pton(AF_INET, argv[optind], &dest.sin_addr) != 1)
		goto usage;

	fd = socket(AF_INET, SOCK_RAW, IPPROTO_ICMP);
	if (fd < 0) {
		fprintf(stderr, "ping: socket(SOCK_RAW): %s\n", strerror(errno));
		return 2;
	}
	for (i = 0; i < count; i++) {
		uint16_t seq = (uint16_t)(i + 1);
		struct sockaddr_in from;
		double sent;
		int got, j;

		memset(req, 0, sizeof(req));
		icmp->type = ICMP_ECHO;
		icmp->un.echo.id = htons(id);
		icmp->un.echo.sequence = htons(seq);
		for (j = 0; j < size; j++)
			req[sizeof(*icmp) + j] = (uint8_t)(j + seq);
		/* computed with the checksum field zero, stored big-endian */
		icmp->checksum = htons(inet_checksum(req, sizeof(*icmp) + size));
		sent = now_ms();
		if (sendto(fd, req, sizeof(*icmp) + size, 0,
			   (struct sockaddr *)&dest, sizeof(dest)) < 0) {
			fprintf(stderr, "ping: sendto: %s\n", strerror(errno));
			return 2;
		}
		got = wait_reply(fd, id, seq, timeout_s * 1000, &from);
		if (got < 0) {
			printf("no reply: seq=%u\n", seq);
			continue;
		}
		received++;
		printf("reply from %s: seq=%u id=%u bytes=%d time=%.2f ms\n",
		       inet_ntoa(from.sin_addr), seq, id, got, now_ms() - sent);
	}
	printf("%d sent, %d received\n", count, received);
	close(fd);
	return received == count ? 0 : 1;

usage:
	fprintf(stderr, "usage: ping [-c COUNT] [-s SIZE] [-W SECONDS] DEST\n"
			"       ping --checksum HEX\n");
	return 2;
}
