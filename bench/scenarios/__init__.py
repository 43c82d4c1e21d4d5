"""Every module in this package registers its scenarios with `@bench.scenario`; all are loaded."""

import importlib
import pkgutil


def load_all() -> None:
    """Import every scenario module so its `@scenario` functions register."""
    for module in pkgutil.iter_modules(__path__):
        importlib.import_module(f"{__name__}.{module.name}")
