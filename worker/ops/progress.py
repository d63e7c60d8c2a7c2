"""Progress bars for long commands: on a terminal only (stderr), so pipes and logs stay clean."""

from __future__ import annotations

import os
import sys
from typing import Any

from tqdm import tqdm


def progress(*, total: int | None, desc: str, unit: str, **kwargs: Any) -> tqdm:
    """A tqdm bar on stderr; hidden when stderr is not a terminal (unless PEDRO_PROGRESS=1)."""
    forced = os.environ.get("PEDRO_PROGRESS") == "1"
    return tqdm(
        total=total,
        desc=desc,
        unit=unit,
        file=sys.stderr,
        dynamic_ncols=True,
        disable=False if forced else None,
        **kwargs,
    )
