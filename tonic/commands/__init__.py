"""One module per subcommand; cli.py only wires them."""
