"""Named points where fault-injection tests stop a real run, to kill it there with a real signal.

When the variable AUTOANNOTATE_TEST_PAUSE_AT names a point, the process says so on stderr when it gets
there and sleeps until it is killed; unset (always, outside those tests), a point does nothing.
"""

from __future__ import annotations

import os
import sys
import time

PAUSE_VARIABLE = "AUTOANNOTATE_TEST_PAUSE_AT"


def pause_point(name: str) -> None:
    if os.environ.get(PAUSE_VARIABLE) == name:
        print(f"paused at {name}", file=sys.stderr, flush=True)
        time.sleep(3600)
