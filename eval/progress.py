"""Progress bars on stderr (tqdm), quiet when stderr is not a terminal unless forced."""

from __future__ import annotations

import sys

from tqdm import tqdm


def bar(total: int, desc: str, enabled: bool = True):
    return tqdm(total=total, desc=desc, unit="q", file=sys.stderr, disable=not enabled, dynamic_ncols=True,
                mininterval=1.0)


class BuildProgress:
    """Adapter for index progress callbacks progress(stage, done, total): one bar per stage."""

    def __init__(self, enabled: bool = True):
        self.enabled = enabled
        self._stage = None
        self._bar = None

    def __call__(self, stage: str, done: int, total: int) -> None:
        if not self.enabled:
            return
        if stage != self._stage:
            self.close()
            self._stage = stage
            self._bar = tqdm(total=total, desc=f"index: {stage}", file=sys.stderr, dynamic_ncols=True,
                             mininterval=1.0)
        if self._bar is not None:
            self._bar.total = total
            self._bar.update(done - self._bar.n)  # update() honours mininterval, refresh() does not

    def close(self) -> None:
        if self._bar is not None:
            self._bar.close()
            self._bar = None
