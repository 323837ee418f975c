"""The labs' shared helpers (rawnet/lab.py) on a real guest."""

from __future__ import annotations

import pytest

from kdk.api import Kdk
from rawnet.lab import require_config


def test_a_missing_kernel_option_skips_the_test_naming_it(vm: Kdk) -> None:
    with pytest.raises(pytest.skip.Exception, match=r"lacks CONFIG_KDK_NO_SUCH_OPTION$"):
        require_config(vm, "CONFIG_PACKET", "CONFIG_KDK_NO_SUCH_OPTION")
    require_config(vm, "CONFIG_PACKET", "CONFIG_VETH")  # built in, and a module: no skip
