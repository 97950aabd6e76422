"""The config knobs' bounds, from the collection's one table (plugins/module_utils/_config_bounds.py).

The lab ships in the repository beside the collection and enforces exactly the bounds the
modules check before they send an override. That file imports nothing but the standard
library, so the lab loads it by path: no installed collection (``ansible_collections``) is
needed to run the lab.
"""
from __future__ import annotations

import importlib.util
import os

_PATH = os.path.normpath(os.path.join(os.path.dirname(os.path.abspath(__file__)), os.pardir, os.pardir,
                                      "plugins", "module_utils", "_config_bounds.py"))


def _load():
    spec = importlib.util.spec_from_file_location("ceptra_lab._collection_config_bounds", _PATH)
    if spec is None or not os.path.isfile(_PATH):
        raise ImportError("the lab reads its config bounds from %s (the collection beside lab/); run the lab from a "
                          "checkout of the repository" % _PATH)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


bounds = _load()
