"""The fake board's ``sys``: MicroPython's own, playing another board.

``_fbboot`` copies the attributes of the VM's ``sys`` into this module, sends every other
name to it through ``__getattr__``, sets ``implementation``, ``platform`` and ``version`` to
the board's, and installs the module as ``sys.modules["sys"]`` (``import sys`` looks there
first). Hidden helper of tools/fakeboard; never a board file.
"""
