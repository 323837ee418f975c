"""kdk.modules.faultinject's parsing, without a VM: the fault's site from
a step's kernel log, a sweep from fail_nth.py's output, leaks attributed
to the step whose process allocated them, and the table; and, in the
session's VM (a kernel without fault injection), the one line it says."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from kdk.api import Kdk
from kdk.errors import KdkError
from kdk.klog import kmsg as klog
from kdk.modules import faultinject
from kdk.testrun import sweep_targets, swept_by_default

from .conftest import DATA, PROJECT, kdk_cli

FAULT = [
    "FAULT_INJECTION: forcing a failure.",
    "name failslab, interval 1, probability 0, space 0, times 1",
    "CPU: 1 PID: 312 Comm: fail_nth Tainted: G           O       6.1.192-kdk-debug #1",
    "Call Trace:",
    "<TASK>",
    "dump_stack_lvl+0x5b/0x77",
    "should_fail.cold+0x5/0xa",
    "__should_failslab+0xb6/0x100",
    "__kmem_cache_alloc_node+0x5c/0x210",
    "__kmalloc_node_track_caller+0x4f/0xc0",
    "kvasprintf_const+0xce/0x190",
    "kobject_set_name_vargs+0x5a/0x130",
    "dev_set_name+0x9b/0xd0",
    "misc_register+0x1e2/0x4c0",
    "kdkmisc_init+0x16/0x1000 [kdkmisc]",
    "do_one_initcall+0xe6/0x3f0",
    "do_init_module+0x194/0x5e0",
    "</TASK>",
]


def kmsg(lines: list[str]) -> str:
    return "".join(f"4,{i},{1000 * i},-;{text}\n" for i, text in enumerate(lines, 1))


def test_the_site_names_the_modules_frame_what_it_called_and_what_allocated() -> None:
    records = klog.parse(kmsg(["kdk-fail-nth: kdkmisc step 262", *FAULT]))
    assert faultinject.site(records, "kdkmisc") == (
        "kdkmisc_init+0x16 [kdkmisc] > misc_register > kvasprintf_const"
    )
    assert faultinject.site([], "kdkmisc") == "(no stack: __GFP_NOWARN)"


def output(*events: dict[str, object]) -> str:
    return "\n".join(json.dumps(e) for e in events)


def step(n: int, pid: int, rc: int, errno: int, injected: bool, log: str = "") -> dict[str, object]:
    left = 0 if injected else 5
    return {
        "event": "step",
        "n": n,
        "pid": pid,
        "rc": rc,
        "errno": errno,
        "left": left,
        "injected": injected,
        "log": log,
    }


def test_a_sweep_has_a_row_per_swept_step_from_the_inits_first_point() -> None:
    kasan = kmsg([*FAULT, "BUG: KASAN: double-free in kfree+0x6a/0x90"])
    out = output(
        step(20000, 300, 0, 0, False),
        {"event": "unload", "n": 20000, "rc": 0, "errno": 0, "log": ""},
        step(262, 301, -1, 12, True, kasan),
        {"event": "init", "at": 262},
        step(261, 302, -1, 12, True, kmsg(FAULT[:4])),
        {"event": "swept", "n": 261},
        {"event": "swept", "n": 262},
        step(263, 303, 0, 0, False),
        {"event": "unload", "n": 263, "rc": 0, "errno": 0, "log": ""},
        {"event": "swept", "n": 263},
    )
    sweep = faultinject.parse(out, "kdkmisc")
    assert [(s.n, s.errno, s.problems) for s in sweep.steps] == [
        (1, 12, ["KASAN: double-free in kfree"]),
        (2, 0, []),
    ]
    assert sweep.failed and sweep.init_at == 262
    text = faultinject.table(sweep)
    assert text.splitlines()[2].split() == [
        "1",
        "kdkmisc_init+0x16",
        "[kdkmisc]",
        ">",
        "misc_register",
        ">",
        "kvasprintf_const",
        "-ENOMEM",
        "(12)",
        "FAIL:",
        "KASAN:",
        "double-free",
        "in",
        "kfree",
    ]

    leak = (
        "unreferenced object 0xffff888008fc1a80 (size 128):\n"
        '  comm "fail_nth", pid 303, jiffies 4294907966\n'
        "  backtrace:\n"
        "    [<000000002f6d1b20>] __kmem_cache_alloc_node+0x140/0x210\n"
        "    [<00000000cc18bfec>] kmalloc_trace+0x2a/0xd0\n"
        "    [<0000000084c4374c>] 0xffffffffa0008091\n"
        "    [<0000000084c4374d>] do_one_initcall+0xe6/0x3f0\n"
    )
    faultinject.attribute_leaks(leak, [sweep])
    assert sweep.steps[1].problems == [
        "leak: 128 bytes allocated at 0xffffffffa0008091 < do_one_initcall+0xe6"
    ]


def leak_of(pid: int, size: int, frames: list[str]) -> str:
    """A kmemleak list entry of the object allocated by `pid` at `frames`."""
    lines = [f"unreferenced object 0xffff888008fc{pid:04x} (size {size}):"]
    lines += [f'  comm "fail_nth", pid {pid}, jiffies 4294907966', "  backtrace:"]
    lines += [f"    [<00000000{i:08x}>] {f}" for i, f in enumerate(frames)]
    return "\n".join(lines) + "\n"


def test_a_leak_inside_the_kernel_call_that_failed_is_the_kernels_own() -> None:
    """The step's allocation failed inside misc_register: what misc_register
    allocated before and did not free on its error path is a note; what the
    init allocated itself and did not free is the step's failure."""
    out = output(
        {"event": "init", "at": 262},
        step(262, 301, -1, 12, True, kmsg(FAULT)),
        {"event": "swept", "n": 262},
    )
    sweep = faultinject.parse(out, "kdkmisc")
    assert faultinject.failed_call(sweep.steps[0].site) == "misc_register"
    inside = ["kvasprintf_const+0x9e/0x190", "kobject_set_name_vargs+0x5a/0x130"]
    inside += ["dev_set_name+0x9b/0xd0", "misc_register+0x1e2/0x4c0", "0xffffffffa0008016"]
    own = ["kmalloc_trace+0x2a/0xd0", "0xffffffffa0008009", "do_one_initcall+0xe6/0x3f0"]
    allocator = ["__kmem_cache_alloc_node+0x140/0x210"]
    faultinject.attribute_leaks(
        leak_of(301, 16, [*allocator, *inside]) + leak_of(301, 64, [*allocator, *own]),
        [sweep],
    )
    assert sweep.steps[0].problems == [
        "leak: 64 bytes allocated at 0xffffffffa0008009 < do_one_initcall+0xe6"
    ]
    assert sweep.notes == [
        "step 1: leaked inside misc_register, the call whose allocation failed"
        " (kvasprintf_const+0x9e < kobject_set_name_vargs+0x5a < dev_set_name+0x9b):"
        " the kernel's own error path, not counted"
    ]


def test_a_leak_deeper_in_the_call_that_failed_is_the_kernels_own_too() -> None:
    """faulty's kmem_cache_create failed in sysfs_slab_add (kmem_cache_create
    itself is an allocator frame, left out of the site): 6.1's
    sysfs_slab_add does not free the kobject's name on its error path."""
    site = "faulty_init+0x29 [faulty] > sysfs_slab_add > __kernfs_new_node.constprop.0"
    steps = [faultinject.Step(n, 385 + n, 12, True, site) for n in (15, 17)]
    sweep = faultinject.Sweep("faulty", steps)
    frames = ["__kmem_cache_alloc_node+0x140/0x210", "kvasprintf_const+0xce/0x190"]
    frames += ["kobject_set_name_vargs+0x44/0x130", "kobject_init_and_add+0xbb/0x120"]
    frames += ["sysfs_slab_add+0x1a2/0x2e0", "__kmem_cache_create+0x3c6/0x600"]
    frames += ["kmem_cache_create_usercopy+0x14d/0x2f0", "kmem_cache_create+0x12/0x20"]
    frames += ["0xffffffffa0010029", "do_one_initcall+0xe6/0x3f0"]
    faultinject.attribute_leaks(leak_of(400, 16, frames) + leak_of(402, 16, frames), [sweep])
    assert not sweep.failed  # one note for both steps
    assert sweep.notes == [
        "2 steps (15, 17): leaked inside sysfs_slab_add, the call whose allocation failed"
        " (kvasprintf_const+0xce < kobject_set_name_vargs+0x44 < kobject_init_and_add+0xbb):"
        " the kernel's own error path, not counted"
    ]


def test_a_warning_of_the_kernel_after_it_hid_the_failure_is_the_kernels_own() -> None:
    """A real step of kdkedu's sweep with its edu device: the failed
    allocation was one of /proc/irq/N's files, which 6.1's request_irq
    goes on without (kdkedu's probe succeeded), and at rmmod free_irq
    warns that the file is missing. The same warning counts when the
    kernel told the module (its load failed), or when it is in the
    module's own function."""
    fault = (DATA / "kmsg-kdkedu-fault-in-request-irq.txt").read_text().splitlines()
    warning = (DATA / "kmsg-kdkedu-irq-proc-warning.txt").read_text().splitlines()

    def swept(n: int) -> dict[str, object]:
        return {"event": "swept", "n": n}

    def unload(n: int, lines: list[str]) -> dict[str, object]:
        return {"event": "unload", "n": n, "rc": 0, "errno": 0, "log": kmsg(lines)}

    at = "remove_proc_entry+0x21f/0x3f0"  # where it warned; made the module's own below
    own = [
        ln.replace(
            f"fs/proc/generic.c:734 {at}", "kdkedu.c:300 kdkedu_remove+0x2f/0x90 [kdkedu]"
        ).replace(f"0010:{at}", "0010:kdkedu_remove+0x2f/0x90 [kdkedu]")
        for ln in warning
    ]
    out = output(
        {"event": "init", "at": 100},
        step(202, 400, 0, 0, True, kmsg(fault)),
        unload(202, warning),
        step(204, 401, 0, 0, True, kmsg(fault)),
        unload(204, warning),
        step(206, 402, -1, 12, True, kmsg([*fault, *warning])),
        step(208, 403, 0, 0, True, kmsg(fault)),
        unload(208, own),
        *(swept(n) for n in (202, 204, 206, 208)),
    )
    sweep = faultinject.parse(out, "kdkedu")
    assert sweep.steps[0].site == (
        "kdkedu_probe+0x3ca [kdkedu] > devm_request_threaded_irq > __proc_create"
    )
    problems = [(s.n, s.problems) for s in sweep.steps]
    assert problems == [
        (103, []),
        (105, []),
        (107, ["warned: WARNING at fs/proc/generic.c:734 in remove_proc_entry"]),
        (109, ["warned: WARNING at kdkedu.c:300 in kdkedu_remove [kdkedu]"]),
    ]
    assert sweep.notes == [
        "2 steps (103, 105): WARNING at fs/proc/generic.c:734 in remove_proc_entry, after"
        " devm_request_threaded_irq went on without what it failed to allocate: the kernel's"
        " own error path, not counted"
    ]


def test_a_module_that_does_not_load_is_said_not_swept() -> None:
    sweep = faultinject.parse(output(step(20000, 300, -1, 19, False)), "kdkedu")
    assert sweep.steps == [] and not sweep.failed
    assert sweep.notes == ["not swept: kdkedu does not load here (-ENODEV (19))"]
    btf = kmsg(["failed to validate module [kdkedu] BTF: -22"])
    sweep = faultinject.parse(output(step(20000, 300, -1, 22, False, btf)), "kdkedu")
    assert sweep.notes == [
        "not swept: kdkedu does not load here (-EINVAL (22): "
        "failed to validate module [kdkedu] BTF: -22)"
    ]


def test_a_sweeps_names_take_the_parameters_after_them() -> None:
    """`kdk test --fault-inject kdkgpio_irq line=2 hello`: kdkgpio_irq (one
    module of its folder) with line=2, hello with none; a parameter before
    any name is one clear line."""
    (gpio, gpio_params), (hello, hello_params) = sweep_targets(
        ["kdkgpio_irq", "line=2", "hello"], PROJECT
    )
    assert (gpio.name, gpio.module, gpio_params) == ("kdkgpio", "kdkgpio_irq", ["line=2"])
    assert (hello.name, hello.module, hello_params) == ("hello", "", [])
    with pytest.raises(KdkError, match=r"^line=2: a parameter goes after its module: "):
        sweep_targets(["line=2", "hello"], PROJECT)


def test_with_no_name_every_module_of_a_users_project_is_swept(tmp_path: Path) -> None:
    """A project laid out its own way (no kmods/, no drivers/): all of its
    module folders but the fixtures under tests/; none at all is an error,
    not a sweep of nothing that passes."""
    for folder in ("net/mydrv", "hello", "tests/data/fixture"):
        (tmp_path / folder).mkdir(parents=True)
        name = Path(folder).name
        (tmp_path / folder / "Kbuild").write_text(f"obj-m := {name}.o\n")
        (tmp_path / folder / f"{name}.c").write_text("")
    assert [m.name for m in swept_by_default(tmp_path)] == ["hello", "mydrv"]
    assert [m.name for m in swept_by_default(PROJECT)] == [
        m.name for m in Kdk().modules() if m.path.parent.name in ("kmods", "drivers")
    ]
    empty = tmp_path / "empty"
    empty.mkdir()
    (empty / ".git").mkdir()
    r = subprocess.run(
        [sys.executable, "-m", "kdk.cli", "test", "--fault-inject"],
        capture_output=True,
        text=True,
        cwd=empty,
        env=dict(os.environ, KDK_VM="not-up"),
    )
    assert (r.returncode, r.stdout) == (1, "")
    assert r.stderr == f"kdk: no module to sweep: {empty} has no module folder (name one)\n"


def test_a_kernel_without_fault_injection_is_one_line_and_a_failure(vm: Kdk) -> None:
    """The distribution kernel has no failslab: `kdk load --fail-nth` and
    `kdk test --fault-inject` each say so once and exit non-zero (the sweep
    over several modules stops at the first, not "not swept" for each)."""
    release = vm.backend.require().kernel
    said = (
        f"kdk: kernel {release} has no fault injection (/sys/kernel/debug/failslab): "
        "boot a debug kernel, kdk up --kernel debug (kdk kernel build --debug)"
    )
    for argv in (["load", "hello", "--fail-nth", "1"], ["test", "--fault-inject", "hello", "sync"]):
        res = kdk_cli(*argv)
        assert res.returncode != 0 and res.stderr.strip().splitlines()[-1] == said, res.stderr
