"""`python -m parrot ...` is the same as the `parrot` command (and what torchrun runs)."""

from parrot.cli import main

if __name__ == "__main__":
    raise SystemExit(main())
