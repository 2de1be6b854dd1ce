"""A fake USB MicroPython board: a pty wired to the REPL of a real MicroPython VM."""
