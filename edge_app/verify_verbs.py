"""The device's `verify` verb (entry point in ``puf.verbs``); its work is imported when run."""

from __future__ import annotations

from edge_app.verbs import Verb, from_module

verify = Verb(
    "verify",
    "Verify photos of labels against a signed bundle: genuine, counterfeit or unreadable, with timings.",
    "  puf verify photo.jpg                               # models/default, ~/.config/puf/trusted_keys\n"
    "  puf verify shots/*.jpg --bundle bundles/b1 --json\n"
    "  puf verify photo.jpg --no-classify                 # search every pattern's shard\n"
    "  puf verify photo.jpg --trusted-keys keys/ --label-px 250",
    *from_module("edge_app.verify_cli"),
    needs=("faiss", "cryptography"),
    extra="device",
)
