"""``amtomat wall``: a live terminal view of the compartment wall."""
