"""amtomat wire protocol: one code base for CPython (host) and MicroPython (boards).

Modules are imported one by one (``from protocol import cobs``) so a board only loads
what it uses.
"""

PROTOCOL_VERSION = 1
