"""Files written so that a reader sees the old file or the whole new one, never half.

>>> import tempfile
>>> path = Path(tempfile.mkdtemp()) / "sub" / "a.txt"
>>> replace_atomically(path, lambda tmp: tmp.write_text("done"))
>>> path.read_text()
'done'
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Callable


def replace_atomically(path: Path, write: Callable[[Path], None]) -> None:
    """Run ``write`` on a temp file beside ``path``, fsync it, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Same folder, so os.replace is a rename within one file system (atomic on POSIX).
    # The ".tmp" suffix keeps a leftover from a crash out of the "*.json" glob.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    os.close(fd)
    tmp = Path(tmp_name)
    # mkstemp creates 0600; results are meant to be shared like any other output file.
    umask = os.umask(0)
    os.umask(umask)
    os.chmod(tmp, 0o666 & ~umask)
    try:
        write(tmp)
        with open(tmp, "rb+") as fh:
            os.fsync(fh.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
