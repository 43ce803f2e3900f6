"""The criu engine: CRIU checkpoints of a kernel's process tree (engine.py), CRIU itself
(tool.py), the seccomp filter that keeps io_uring away (seccomp.py) and the watchdog
that ends a tree whose tonic was killed (watchdog.py)."""
