// SPDX-License-Identifier: GPL-2.0
/*
 * fail_nth KO N [PARAMS]: load the module file KO with the N-th
 * fault-injection point of the load made to fail (N=0: none), and print
 * "rc errno left": finit_module's return, its errno, and what is left of
 * N (0: the N-th point was reached and failed). Built on the host by kdk
 * (kdk.modules.faultinject) and run in the guest, one process per load:
 * between the write to fail-nth and the system call there is nothing that
 * could allocate (no page fault, no exec), which a script cannot promise.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

int main(int argc, char **argv)
{
	char path[64], buf[32] = "";
	int ko, w, r;
	long rc;
	int err;

	if (argc < 3) {
		fprintf(stderr, "usage: fail_nth KO N [PARAMS]\n");
		return 2;
	}
	snprintf(path, sizeof(path), "/proc/self/task/%ld/fail-nth", syscall(SYS_gettid));
	ko = open(argv[1], O_RDONLY);
	w = open(path, O_WRONLY);
	r = open(path, O_RDONLY);
	if (ko < 0 || w < 0 || r < 0) {
		perror("fail_nth: open");
		return 2;
	}
	if (write(w, argv[2], strlen(argv[2])) < 0) {
		perror("fail_nth: write");
		return 2;
	}
	rc = syscall(SYS_finit_module, ko, argc > 3 ? argv[3] : "", 0);
	err = rc ? errno : 0;
	if (read(r, buf, sizeof(buf) - 1) < 0)
		buf[0] = '?';
	if (write(w, "0", 1) < 0)
		return 2;
	printf("%ld %d %ld\n", rc, err, strtol(buf, NULL, 10));
	return 0;
}
