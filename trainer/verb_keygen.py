"""`puf keygen`: an Ed25519 key pair for signing bundles.

Only the standard library at module level; the work is imported when the verb runs.
"""

from __future__ import annotations

import argparse
import json

from edge_app.arguments import nonempty_path
from edge_app.verbs import Verb


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("prefix", type=nonempty_path, help="writes PREFIX.key (private) and PREFIX.pub (public)")
    parser.add_argument("--force", action="store_true", help="overwrite an existing pair")
    parser.add_argument("--json", action="store_true")


def run(args: argparse.Namespace) -> int:
    from trainer.keys import generate_keypair, record_path

    private, public, key_id = generate_keypair(args.prefix, args.force)
    if args.json:
        print(json.dumps({"private": str(private), "public": str(public), "key_id": key_id,
                          "signing_record": str(record_path(private))}))
    else:
        print(f"key {key_id}: private {private} (keep it at the factory, with its signing record "
              f"{record_path(private).name}), public {public} (on each device: puf device trust {public.name})")
    return 0


verb = Verb(
    "keygen",
    "Make an Ed25519 key pair for signing bundles.",
    "  puf keygen keys/factory            # keys/factory.key, keys/factory.pub\n"
    "  puf device trust factory.pub       # on each device, the .pub copied over",
    add_arguments,
    run,
    extras=("device",),
    rank=23,
)
