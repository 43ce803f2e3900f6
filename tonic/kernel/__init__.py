"""The node side (kernel.js, clockshim.c) and tonic's side of talking to it: the messages
(protocol.py), the pipes (pipes.py), the run from pause to pause (driver.py); what to run
(program.py)."""
