"""`python -m benchmarks NAME [args]`: run benchmarks/NAME.py's main() (analysis, sync, ...).
It only dispatches; every benchmark owns its arguments and output."""

from __future__ import annotations

import importlib
import inspect
import pkgutil
import sys
from pathlib import Path


def available() -> list[str]:
    return sorted(
        m.name
        for m in pkgutil.iter_modules([str(Path(__file__).parent)])
        if not m.name.startswith("_")
    )


def main(argv: list[str] | None = None) -> int:
    args = list(sys.argv[1:] if argv is None else argv)
    names = available()
    if not args or args[0] in ("-h", "--help"):
        print(f"usage: python -m benchmarks {{{'|'.join(names)}}} [args]", file=sys.stderr)
        return 0 if args else 2
    name, rest = args[0], args[1:]
    if name not in names:
        print(
            f"benchmarks: unknown benchmark {name!r}; available: {', '.join(names)}",
            file=sys.stderr,
        )
        return 2
    module = importlib.import_module(f"benchmarks.{name}")
    if inspect.signature(module.main).parameters:
        result = module.main(rest)
    else:
        # A main() without parameters reads sys.argv itself.
        sys.argv = [f"benchmarks {name}", *rest]
        result = module.main()
    return int(result or 0)


if __name__ == "__main__":
    sys.exit(main())
