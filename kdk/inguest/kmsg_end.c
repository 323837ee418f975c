// SPDX-License-Identifier: GPL-2.0
/*
 * kmsg_end: make the /dev/kmsg reader on standard input non-blocking and
 * move it past the last record, so that the shell holding that reader
 * reads only the records logged from then on, and stops at the end.
 * Built on the host by kdk (static, like fail_nth) and run by a load
 * script in the guest: a static program starts in a fifth of the time of
 * coreutils' dd under TCG, which would read every old record to get there.
 */
#include <fcntl.h>
#include <stdio.h>
#include <unistd.h>

int main(void)
{
	int flags = fcntl(0, F_GETFL);

	if (flags < 0 || fcntl(0, F_SETFL, flags | O_NONBLOCK) < 0) {
		perror("kmsg_end: fcntl");
		return 1;
	}
	if (lseek(0, 0, SEEK_END) < 0) {
		perror("kmsg_end: lseek");
		return 1;
	}
	return 0;
}
