"""Module folders written without kdk in mind, made in a test's folder.

- `classic`: LDD3's style. The default target of its Makefile runs Kbuild
  itself and passes an include folder it finds through $(PWD); a plain
  `make -C <tree> M=<folder>` loses it and fails to compile.
- `pair`: one folder, two modules; kdkuser calls what kdkprov exports.
- `split`: the same two modules in two folders; kdkuser's is built against
  kdkprov's Module.symvers (KBUILD_EXTRA_SYMBOLS).
- `initfail`: tests/data/initfail.c, whose init fails with a chosen errno or
  waits until released (the tests of load failures).
- `kunit_fail`: tests/data/kunit_fail.c, a KUnit suite with a passing, a
  failing, a skipped and a parameterized case, built for kernels with KUnit.
"""

from __future__ import annotations

import shutil
from pathlib import Path

CLASSIC_MAKEFILE = """\
ifneq ($(KERNELRELEASE),)
# called from the kernel build system
obj-m := classic.o
ccflags-y += -I$(INCDIR)
else
KERNELDIR ?= /lib/modules/$(shell uname -r)/build
PWD := $(shell pwd)

modules:
\t$(MAKE) -C $(KERNELDIR) M=$(PWD) INCDIR=$(PWD)/../include modules

clean:
\trm -rf *.o *.ko *.mod* .*.cmd modules.order Module.symvers
endif
"""
CLASSIC_H = '#define CLASSIC_GREETING "found its header through $(PWD)"\n'
CLASSIC_C = """\
// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>
#include "classic.h"

static int __init classic_init(void)
{
\tpr_info("classic: %s\\n", CLASSIC_GREETING);
\treturn 0;
}

static void __exit classic_exit(void)
{
}

module_init(classic_init);
module_exit(classic_exit);
MODULE_LICENSE("GPL");
"""
CLASSIC_LINE = "classic: found its header through $(PWD)"

PROVIDER_C = """\
// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

int kdkprov_add(int a, int b)
{
\treturn a + b;
}
EXPORT_SYMBOL_GPL(kdkprov_add);

static int __init kdkprov_init(void)
{
\tpr_info("kdkprov: ready\\n");
\treturn 0;
}

static void __exit kdkprov_exit(void)
{
\tpr_info("kdkprov: gone\\n");
}

module_init(kdkprov_init);
module_exit(kdkprov_exit);
MODULE_LICENSE("GPL");
"""
USER_C = """\
// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

int kdkprov_add(int a, int b);

static int __init kdkuser_init(void)
{
\tpr_info("kdkuser: 2 + 3 = %d\\n", kdkprov_add(2, 3));
\treturn 0;
}

static void __exit kdkuser_exit(void)
{
\tpr_info("kdkuser: gone\\n");
}

module_init(kdkuser_init);
module_exit(kdkuser_exit);
MODULE_LICENSE("GPL");
"""


def _write(root: Path, files: dict[str, str]) -> None:
    for name, text in files.items():
        (root / name).parent.mkdir(parents=True, exist_ok=True)
        (root / name).write_text(text)


def classic(root: Path) -> Path:
    """root/classic (the module folder) and root/include; the folder."""
    _write(
        root,
        {
            "classic/Makefile": CLASSIC_MAKEFILE,
            "classic/classic.c": CLASSIC_C,
            "include/classic.h": CLASSIC_H,
        },
    )
    return root / "classic"


def pair(root: Path) -> Path:
    """root/pair: kdkprov and kdkuser, built by one Kbuild; the folder."""
    _write(
        root,
        {
            "pair/Kbuild": "obj-m := kdkprov.o kdkuser.o\n",
            "pair/kdkprov.c": PROVIDER_C,
            "pair/kdkuser.c": USER_C,
        },
    )
    return root / "pair"


def split(root: Path) -> tuple[Path, Path]:
    """root/prov (kdkprov) and root/user (kdkuser, which needs kdkprov's
    export); the two folders."""
    user_kbuild = f"obj-m := kdkuser.o\nKBUILD_EXTRA_SYMBOLS := {root}/prov/Module.symvers\n"
    _write(
        root,
        {
            "prov/Kbuild": "obj-m := kdkprov.o\n",
            "prov/kdkprov.c": PROVIDER_C,
            "user/Kbuild": user_kbuild,
            "user/kdkuser.c": USER_C,
        },
    )
    return root / "prov", root / "user"


def initfail(root: Path) -> Path:
    """root/initfail, with tests/data/initfail.c; the folder."""
    _write(root, {"initfail/Kbuild": "obj-m := initfail.o\n"})
    shutil.copy(Path(__file__).parent / "data" / "initfail.c", root / "initfail")
    return root / "initfail"


def kunit_fail(root: Path) -> Path:
    """root/kunit_fail, with tests/data/kunit_fail.c; the folder."""
    _write(root, {"kunit_fail/Kbuild": "ifdef CONFIG_KUNIT\nobj-m += kunit_fail.o\nendif\n"})
    shutil.copy(Path(__file__).parent / "data" / "kunit_fail.c", root / "kunit_fail")
    return root / "kunit_fail"


def badunwind(root: Path) -> Path:
    """root/badunwind, with tests/data/badunwind.c; the folder."""
    _write(root, {"badunwind/Kbuild": "obj-m := badunwind.o\n"})
    shutil.copy(Path(__file__).parent / "data" / "badunwind.c", root / "badunwind")
    return root / "badunwind"


WARNS_C = """\
// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

static int __init kdkwarns_init(void)
{
\tint unused;

\tpr_info("kdkwarns: loaded\\n");
\treturn 0;
}

static void __exit kdkwarns_exit(void)
{
}

module_init(kdkwarns_init);
module_exit(kdkwarns_exit);
MODULE_LICENSE("GPL");
"""


def warns(root: Path) -> Path:
    """root/kdkwarns: a module that builds with a compiler warning (an
    unused variable at kdkwarns.c:6); the folder."""
    _write(root, {"kdkwarns/Kbuild": "obj-m := kdkwarns.o\n", "kdkwarns/kdkwarns.c": WARNS_C})
    return root / "kdkwarns"


UNLINKED_C = """\
// SPDX-License-Identifier: GPL-2.0
#include <linux/module.h>

int kdk_nowhere(void);

static int __init kdkunlinked_init(void)
{
\treturn kdk_nowhere();
}

module_init(kdkunlinked_init);
MODULE_LICENSE("GPL");
"""


def unlinked(root: Path) -> Path:
    """root/kdkunlinked: a module that compiles and does not link (modpost:
    a symbol nothing exports); the folder."""
    _write(
        root,
        {"kdkunlinked/Kbuild": "obj-m := kdkunlinked.o\n", "kdkunlinked/kdkunlinked.c": UNLINKED_C},
    )
    return root / "kdkunlinked"
