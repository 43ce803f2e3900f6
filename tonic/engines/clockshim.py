"""Building the clock shim (kernel/clockshim.c) that keeps pauses out of node's clocks.

It is compiled on first use with the machine's C compiler into the snapshot cache, keyed
by the source's hash. Without a compiler the criu engine still runs, and says that timers
of different delays set in different cells may fire in another order than under node.
"""

from __future__ import annotations

import functools
import hashlib
import os
import shutil
import subprocess
import tempfile
from pathlib import Path

from tonic.kernel.driver import kernel_file
from tonic.store.layout import BIN


@functools.cache
def shim(cache_root: Path) -> tuple[Path | None, str]:
    """(path of the built shim, None-reason)."""
    source = kernel_file("clockshim.c")
    digest = hashlib.sha256(source.read_bytes()).hexdigest()[:16]
    target = cache_root / BIN / f"clockshim-{digest}.so"
    if target.exists():
        return target, f"clock shim at {target}"
    cc = os.environ.get("CC") or shutil.which("cc") or shutil.which("gcc")
    if cc is None:
        return None, "no C compiler (cc) to build the clock shim"
    target.parent.mkdir(mode=0o700, parents=True, exist_ok=True)
    fd, tmp = tempfile.mkstemp(dir=target.parent, suffix=".so")
    os.close(fd)
    proc = subprocess.run(
        [cc, "-O2", "-shared", "-fPIC", "-o", tmp, str(source), "-ldl"],
        capture_output=True,
        text=True,
        check=False,
    )
    if proc.returncode != 0:
        os.unlink(tmp)
        last = (proc.stderr.strip().splitlines() or ["?"])[-1]
        return None, f"the clock shim does not build: {last}"
    os.chmod(tmp, 0o700)
    os.replace(tmp, target)
    return target, f"clock shim built at {target}"
