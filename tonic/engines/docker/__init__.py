"""The docker engine: a container per notebook, checkpointed and committed after every
cell (engine.py); the connection to the daemon (daemon.py) and the Engine API calls on
it (api.py), runc checkpoints and the daemon's folders (host.py), the image from this
machine's node (image.py), a kernel in a container (tree.py) and the host's files it
gets (copies.py)."""
