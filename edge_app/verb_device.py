"""`puf device trust KEY.pub`, `puf device install BUNDLE`: set a handheld device up from its shell;
`puf device bench`: measure it (`edge_app.device_bench`).

`trust` copies a factory's public key into the folder of keys the device trusts (checked first:
an Ed25519 public key, never a private one) and shows its id, to compare with the one `puf
keygen` showed at the factory. `install` copies a bundle into the device's folder with every check
the app's *Update bundle from folder* makes (signature by a trusted key, every file's checksum, a
sequence above the installed one's, not expired, a revocation list that keeps every label the device
has seen revoked, the model and shards opened); a refused bundle
leaves the installed one in use. The app and `puf verify` then use both. `bench` times photo ->
verdict on the self-test photos and a search in a synthetic shard of `--labels` labels, with the
memory, CPU and OS, as a table or JSON to paste into a report. It lives here, not behind `puf bench
--device`: `bench` is the trainer's verb (trainer/verb_bench.py, which needs the factory extra), and a
device install has neither it nor, by the import contracts, any way for edge_app to reach it.

Only the standard library is imported here at module level.
"""

from __future__ import annotations

import argparse
from pathlib import Path
from typing import TYPE_CHECKING

from edge_app.arguments import nonempty_path, output_path, positive_int
from edge_app.errors import PufError
from edge_app.verbs import Verb

if TYPE_CHECKING:
    from edge_app.device_store import DeviceStore


def add_arguments(parser: argparse.ArgumentParser) -> None:
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("--home", type=output_path, metavar="DIR",
                        help="the device's folder (default: $PUF_HOME, else ~/.local/share/puf)")
    common.add_argument("--json", action="store_true", help="print what was done as JSON")
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    trust = actions.add_parser("trust", parents=[common], help="trust a factory's public key (KEY.pub)",
                               description="Copy a factory's public key into the device's trusted keys "
                                           "(HOME/trusted_keys when the device has that folder, else "
                                           "~/.config/puf/trusted_keys) and show its id.")
    trust.add_argument("key", type=nonempty_path, metavar="KEY.pub",
                       help="the factory's public key (puf keygen's .pub)")
    trust.add_argument("--root", action="store_true",
                       help="trust it as a root key (in the trusted keys' root/ folder): the device then trusts the "
                            "signing keys of the root list its bundles carry, signed by enough root keys")
    trust.add_argument("--threshold", type=positive_int, metavar="K",
                       help="with --root: how many of the device's root keys must sign the first root list it "
                            "accepts (default: all of them; later lists need the threshold of the list held)")
    install = actions.add_parser("install", parents=[common], help="install a bundle on the device",
                                 description="Check a bundle (signature, checksums, sequence, expiry, model) and "
                                             "make it the device's bundle; a refused one changes nothing.")
    install.add_argument("bundle", type=nonempty_path, metavar="BUNDLE", help="the bundle's folder (on a USB stick)")
    install.add_argument("--allow-older", action="store_true",
                         help="install a bundle whose sequence is not above the installed one's (going back on "
                              "purpose)")
    bench = actions.add_parser("bench", help="measure this device: photo -> verdict, search, memory, CPU and OS",
                               description="Time photo -> verdict on the self-test photos and a search in a "
                                           "synthetic shard of random vectors, with memory, CPU and OS; send the "
                                           "figures (--json) with your report.")
    bench.add_argument("--labels", type=positive_int, default=100_000, metavar="N",
                       help="labels in the synthetic shard, 1,000 to 20,000,000 (default 100000)")
    bench.add_argument("--repeat", type=positive_int, default=20, metavar="R",
                       help="passes over the self-test photos (default 20)")
    bench.add_argument("--queries", type=positive_int, default=1000, help="searches timed (default 1000)")
    bench.add_argument("--json", action="store_true", help="print the figures as JSON")


def run(args: argparse.Namespace) -> int:
    from edge_app.device_store import DeviceStore
    from edge_app.verbs import print_report

    if args.action == "bench":
        from edge_app.device_bench import describe as bench_table
        from edge_app.device_bench import device_bench

        return print_report(device_bench(args.labels, args.repeat, args.queries), args.json, bench_table)
    store = DeviceStore(args.home)
    if args.action == "trust" and args.threshold is not None and not args.root:
        raise PufError("--threshold counts root keys: give it with --root")
    report = trust(store, args.key, args.root, args.threshold) if args.action == "trust" else \
        install(store, args.bundle, args.allow_older)
    return print_report(report, args.json, describe)


def trust(store: DeviceStore, key: Path, root: bool = False, threshold: int | None = None) -> dict:
    from edge_app.device_setup import trust_key
    from edge_app.trust_root import ROOT_KEYS, device_threshold, root_keys, set_device_threshold

    folder = store.trusted_keys_dir()
    trusted = trust_key(key, folder / ROOT_KEYS if root else folder)
    if threshold is not None:
        set_device_threshold(folder, threshold)
    report = {"action": "trust", "key_id": trusted.key_id, "path": str(trusted.path), "added": trusted.added,
              "root": root}
    if root:
        report["first_list_needs"] = device_threshold(folder, root_keys(folder))
    return report


def install(store: DeviceStore, bundle: Path, allow_older: bool) -> dict:
    import sys

    from tqdm import tqdm

    from edge_app.device_store import bundle_version

    with tqdm(total=0, unit="B", unit_scale=True, desc="copying the bundle", leave=False,
              disable=not sys.stderr.isatty()) as bar:
        def progress(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        loaded = store.install_bundle(bundle, store.trusted_keys_dir(), progress, allow_older=allow_older)
    return {"action": "install", "path": str(loaded.path), "version": bundle_version(loaded),
            "labels": len(loaded.shards), "revoked": len(loaded.revoked.listing.entries),
            "release": loaded.release.describe(), "signed_by": loaded.signer,
            "warning": loaded.uncalibrated_warning}


def describe(report: dict) -> str:
    if report["action"] == "trust":
        done = "trusted" if report["added"] else "already trusted"
        text = f"{done}: {'root key' if report['root'] else 'key'} {report['key_id']} ({report['path']})"
        if report["root"]:
            text += f"; the first root list must be signed by {report['first_list_needs']} of the device's root keys"
        return text
    text = (f"installed bundle {report['version']}: {report['labels']:,} labels, {report['revoked']} revoked, "
            f"{report['release']}, signed by "
            f"key {report['signed_by']} ({report['path']})")
    return text + (f"\nWARNING: {report['warning']}" if report["warning"] else "")


verb = Verb(
    "device",
    "Set a handheld device up: trust a factory's public key, install a bundle; measure it.",
    "  puf device trust keys/factory.pub          # the factory's public key, once per device\n"
    "  puf device install bundles/b1              # from a USB stick: checked, then the device's bundle\n"
    "  puf device install bundles/b1 --allow-older --json\n"
    "  puf device bench --json                     # this device's figures (100,000 synthetic labels), for a report",
    add_arguments,
    run,
    extras=("device",),
    rank=32,
)
