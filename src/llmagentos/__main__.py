"""``python -m llmagentos``: the same command line as ``llmagentos``."""

from llmagentos.cli.main import main

if __name__ == "__main__":
    raise SystemExit(main())
