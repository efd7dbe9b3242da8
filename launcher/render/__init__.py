"""What every cluster's renderer shares: the command each node runs (command.py) and valid remote names (names.py)."""
