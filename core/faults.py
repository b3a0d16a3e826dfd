"""Named points where fault-injection tests stop a real run, to kill it there with a real signal or to
change the world under it (remove the inbox) and let it go on.

When the variable AUTOANNOTATE_TEST_PAUSE_AT names a point, the process says so on stderr when it gets
there and waits: until the file AUTOANNOTATE_TEST_RESUME_FILE exists when that is set, else until it is
killed. Unset (always, outside those tests), a point does nothing.
"""

from __future__ import annotations

import os
import sys
import time
from pathlib import Path

PAUSE_VARIABLE = "AUTOANNOTATE_TEST_PAUSE_AT"
RESUME_VARIABLE = "AUTOANNOTATE_TEST_RESUME_FILE"


def pause_point(name: str) -> None:
    if os.environ.get(PAUSE_VARIABLE) != name:
        return
    print(f"paused at {name}", file=sys.stderr, flush=True)
    resume = os.environ.get(RESUME_VARIABLE)
    deadline = time.monotonic() + 3600
    while time.monotonic() < deadline and not (resume and Path(resume).exists()):
        time.sleep(0.1)
