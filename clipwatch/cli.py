"""The ``clipwatch`` command. Each area registers its subcommands from its own module in
``clipwatch/commands/``; a subcommand imports its component lazily, so ``--help`` is instant.
Nothing imports this module."""

from __future__ import annotations

import argparse
import importlib
import logging
import sys

# One module per area of the product; each has register(subparsers).
COMMAND_MODULES = (
    "clipwatch.commands.demo",
    "clipwatch.commands.serving",
    "clipwatch.commands.model",
    "clipwatch.commands.streaming",
    "clipwatch.commands.training",
    "clipwatch.commands.deployment",
    "clipwatch.commands.review",
    "clipwatch.commands.loadtest",
    "clipwatch.commands.stack",
    "clipwatch.commands.package",
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="clipwatch", description="clipwatch: activity detection on live HLS video streams, with humans in the loop.")
    sub = p.add_subparsers(dest="command", required=True)
    for name in COMMAND_MODULES:
        importlib.import_module(name).register(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(name)s %(message)s")
    for noisy in ("botocore", "werkzeug", "urllib3", "clipwatch.lambda", "kafka"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    args = parser().parse_args(argv)
    return args.run(args)


if __name__ == "__main__":
    sys.exit(main())
