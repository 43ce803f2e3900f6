"""The engines tonic knows, as a static table: name -> one-line description, in the order
`--help` lists them, and the order the default is chosen in.

`tonic --help` describes the engines from here without importing them (the engines bring
CRIU's and Docker's tooling, time travel and the store: ~25 modules). The registry,
`tonic.engines`, has one engine per name here, and each engine's `description` is its
line here. This module imports nothing.
"""

from __future__ import annotations

DESCRIPTIONS: dict[str, str] = {
    "criu": "CRIU snapshot after every cell; an edit resumes from the longest valid prefix",
    "replay": "runs every cell afresh on each run (no snapshots); always available",
    "docker": (
        "a container per notebook, checkpointed (CRIU) and committed after every cell; "
        "files stay in the container"
    ),
}
# The first available engine of this list is the default (docker only when asked for:
# with `--engine docker` or TONIC_ENGINE=docker).
PREFERENCE: tuple[str, ...] = ("criu", "replay")
