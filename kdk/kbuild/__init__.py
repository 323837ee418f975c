"""Kernels kdk builds (`kdk kernel build/list/remove`).

kdk boots the host's kernels; this package builds others into the user's
cache (kdk.kernel.kernels_cache): the same Debian source as the host's 6.1,
or any tree the user has, with a small config made by the kernel's own
tools from the fragments in `fragments/` (data, not code), and with
`--debug` the checks that catch a module's bugs. A finished build is a
first-class kernel (kdk.kernel.built_kernels): `kdk up --kernel NAME`.
"""
