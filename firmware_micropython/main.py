"""Board entry point: run the firmware; after a crash, record it and reset the board.

A KeyboardInterrupt (Ctrl-C in the REPL window) is not caught: the REPL takes over.
The next boot reports reset reason "crash" with the start of the crash file.
"""

import machine

try:
    from amtfw.runtime import main

    main()
except Exception as exc:
    try:
        from amtfw.platform import record_crash

        record_crash(exc)
        import time

        import micropython

        micropython.kbd_intr(3)  # a short chance for Ctrl-C before the reset
        time.sleep_ms(1000)
    finally:
        machine.reset()
