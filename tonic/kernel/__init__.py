"""The node side (kernel.js, clockshim.c) and tonic's side of talking to it (driver.py);
what to run (program.py)."""
