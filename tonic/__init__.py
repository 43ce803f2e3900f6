"""tonic: plain Node.js modules as notebooks with time travel."""

__version__ = "0.1.0"
