// SPDX-License-Identifier: GPL-2.0
/*
 * insmod FILE [PARAM...]: load the module file FILE once through
 * finit_module, its parameters joined by spaces, as insmod does. Busybox's
 * insmod tries init_module after any failure of finit_module, so a module
 * whose init fails had its init run twice, its log lines twice. A failure
 * prints "insmod: can't insert 'FILE': WORDS", WORDS being busybox's for
 * the errnos it words its own way (kdk.modules.errnos reads them), and
 * exits with the errno (2 for a usage error, 1 with no memory). Built on
 * the host by kdk (kdk.vm.initramfs) and run in the guest from /run/kdk.
 */
#include <errno.h>
#include <fcntl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>
#include <unistd.h>

static const char *words(int err)
{
	switch (err) {
	case ENOEXEC:
		return "invalid module format";
	case ENOENT:
		return "unknown symbol in module, or unknown parameter";
	case ESRCH:
		return "module has wrong symbol version";
	default:
		return strerror(err);
	}
}

int main(int argc, char **argv)
{
	size_t len = 1;
	char *params;
	int i, fd, err;

	if (argc < 2) {
		fprintf(stderr, "usage: insmod FILE [PARAM...]\n");
		return 2;
	}
	for (i = 2; i < argc; i++)
		len += strlen(argv[i]) + 1;
	params = calloc(1, len);
	if (!params) {
		perror("insmod");
		return 1;
	}
	for (i = 2; i < argc; i++) {
		if (i > 2)
			strcat(params, " ");
		strcat(params, argv[i]);
	}
	fd = open(argv[1], O_RDONLY | O_CLOEXEC);
	if (fd < 0) {
		err = errno;
		fprintf(stderr, "insmod: can't insert '%s': %s\n", argv[1], strerror(err));
		return err;
	}
	if (syscall(SYS_finit_module, fd, params, 0) != 0) {
		err = errno;
		fprintf(stderr, "insmod: can't insert '%s': %s\n", argv[1], words(err));
		return err;
	}
	return 0;
}
