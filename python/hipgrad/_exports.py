"""One package-level export rule for hipgrad.ops and hipgrad.nn: each submodule lists its public
names in `__all__`, and the package re-exports all of them."""

from __future__ import annotations

import importlib
import pkgutil
from collections.abc import Callable


def export_submodules(package: str, path: list[str], namespace: dict,
                      include: Callable[[str], bool], what: str) -> list[str]:
    """Imports every submodule of `package` whose name passes `include` (in name order), binds
    each name of its `__all__` in `namespace` and returns those names. A name exported by two
    submodules is an ImportError (`what` names the kind of submodule in that message)."""
    names = []
    for info in sorted(pkgutil.iter_modules(path), key=lambda m: m.name):
        if not include(info.name):
            continue
        module = importlib.import_module(f"{package}.{info.name}")
        for name in getattr(module, "__all__", ()):
            if name in namespace:
                raise ImportError(f"{package}.{name} is exported by two {what} "
                                  f"({module.__name__} and another)")
            namespace[name] = getattr(module, name)
            names.append(name)
    return names
