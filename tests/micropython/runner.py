"""Runs test_* functions of the named modules on MicroPython or CPython; prints a summary."""

import sys


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _print_traceback(exc: BaseException) -> None:
    print_exception = getattr(sys, "print_exception", None)
    if print_exception is not None:  # MicroPython
        print_exception(exc, sys.stdout)
        return
    import traceback  # CPython

    traceback.print_exception(type(exc), exc, exc.__traceback__, file=sys.stdout)


def _test_names(module: object) -> list[str]:
    names: list[str] = []
    for name in dir(module):
        if name.startswith("test_") and callable(getattr(module, name)):
            names.append(name)
    names.sort()
    return names


def run(module_names: list[str], skip: list[str] | None = None) -> bool:
    """Import each module, call its test_* functions (sorted), print PASS/FAIL lines.

    The last line printed is exactly ``N passed, M failed``; returns True when M is 0.
    A module that cannot be imported counts as one failure. Tests named in skip
    (``module.test_name``) are not called and not counted; a ``SKIP`` line names each.
    """
    skipped = skip or []
    passed = 0
    failed = 0
    for module_name in module_names:
        try:
            module = __import__(module_name)
        except Exception as exc:
            failed += 1
            print(f"FAIL {module_name}: {_describe(exc)}")
            _print_traceback(exc)
            continue
        for name in _test_names(module):
            label = f"{module_name}.{name}"
            if label in skipped:
                print(f"SKIP {label}")
                continue
            try:
                getattr(module, name)()
            except Exception as exc:
                failed += 1
                print(f"FAIL {label}: {_describe(exc)}")
                _print_traceback(exc)
            else:
                passed += 1
                print(f"PASS {label}")
    print(f"{passed} passed, {failed} failed")
    return failed == 0


if __name__ == "__main__":
    if not run(sys.argv[1:]):
        sys.exit(1)
