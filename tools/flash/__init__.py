"""``amtomat flash``: provision a board with the firmware, its config and its key."""
