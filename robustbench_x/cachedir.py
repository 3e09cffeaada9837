"""Where the harness caches things: ``$RBX_CACHE_DIR``, else the user cache directory."""

from __future__ import annotations

import os
from pathlib import Path


def cache_root() -> Path:
    root = os.environ.get("RBX_CACHE_DIR")
    if root:
        return Path(root).expanduser()
    from platformdirs import user_cache_dir

    return Path(user_cache_dir("robustbench_x"))
