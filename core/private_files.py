"""Files and folders only their owner may read: the home (database, images, secrets) and every file holding a
password or key. Created so from the first byte (never written, then chmod'ed) and replaced whole."""

from __future__ import annotations

import os
from pathlib import Path

PRIVATE_FILE, PRIVATE_FOLDER = 0o600, 0o700


def write_private(path: Path, text: str) -> None:
    """`text` at `path`, mode 0600 from its creation, whole or not at all (a scratch file renamed over it)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    scratch = path.with_name(f".{path.name}.{os.getpid()}.incoming")
    descriptor = os.open(scratch, os.O_WRONLY | os.O_CREAT | os.O_EXCL, PRIVATE_FILE)
    try:
        with os.fdopen(descriptor, "w") as file:
            file.write(text)
            file.flush()
            os.fsync(file.fileno())
        os.replace(scratch, path)
    except BaseException:
        scratch.unlink(missing_ok=True)
        raise


def private_folder(path: Path) -> Path:
    """`path`, made readable by its owner alone when this creates it (one that exists is the user's to keep)."""
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        path.mkdir(mode=PRIVATE_FOLDER, exist_ok=True)
        path.chmod(PRIVATE_FOLDER)  # whatever the umask
    return path
