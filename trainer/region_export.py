"""A region's device bundle exported from the fingerprint store (`trainer.fingerprint_store`).

The bundle's model (any bundle of it: as `puf export` wrote it, or one enrolled since) and
the store's fingerprints of one product/region become a new bundle at `out`: the same model
files, and per-pattern Faiss shards holding exactly that region's labels, built, tuned and
written as enrollment writes them (`trainer.enroll.write_shard`; refused, as there, when an
index would raise scores past the threshold: `trainer.enroll.check_score_errors`), signed
and renamed into place by the bundle writer (`trainer.bundle_write.BundleUpdate`). The
source's own shards and thumbnails are left out (the store holds no thumbnails). A device
given the bundle of one region calls a label of another region counterfeit: it holds no
fingerprint of it.

`out` counts its sequence up from the higher of the source's and the bundle it replaces, so
a device holding an older export of the region accepts the new one and never the reverse.

Revocations (`edge_app.revocations`) are carried: the source's list, the list of the bundle
`out` replaces, and, with a central registry (`puf registry revoke`), its revoked labels of
this region. Their rows stay out of the shards and their fingerprints go into the new list,
one version above the higher of the two bundles' (a device refuses a list that is older or
leaves a label out).
"""

from __future__ import annotations

import sys
import time
from contextlib import ExitStack
from pathlib import Path
from tempfile import TemporaryDirectory
from typing import TYPE_CHECKING

import numpy as np
from tqdm import tqdm

from edge_app.bundle_format import MANIFEST, Manifest, ShardEntry, verify_files
from edge_app.errors import PufError
from edge_app.folder_swap import home_of
from edge_app.revocations import FILES as REVOKED_FILES
from edge_app.revocations import Revocation, Revoked
from trainer.bundle_write import BundleUpdate, bundle_lock, read_for_update, replaced_sequence
from trainer.enroll import (
    EnrollOptions,
    check_calibrated_size,
    check_score_errors,
    close_section,
    ensure_templates,
    genuine_cosine_of,
    new_section,
    shard_budget,
    write_shard,
)
from trainer.fingerprint_store import FingerprintStore, Region, collection_name
from trainer.pattern_spill import PatternSpill
from trainer.revoke import combined, write_revoked

if TYPE_CHECKING:
    from trainer.keys import SigningKey

LITE_WARN_SECONDS = 60.0  # a Milvus Lite read expected to take longer is warned of


def replaced_revocations(out: Path) -> Revoked:
    """The revocations of the bundle at `out` that an export replaces (none when there is none,
    or it is not whole: its files' checksums fail)."""
    if not (Path(out) / MANIFEST).is_file():
        return Revoked()
    try:
        manifest = Manifest.read(out)
        verify_files(out, manifest)
        return Revoked.load(out, manifest)
    except PufError:
        return Revoked()


def central_revocations(central: str | None, store: FingerprintStore, collection: str, region: Region
                        ) -> list[Revocation]:
    """The central registry's revoked labels that the store holds for `region` (none without
    a registry)."""
    if central is None:
        return []
    from fabrication.central import CentralRegistry  # sqlalchemy

    with CentralRegistry(central) as registry:
        revoked = registry.revocations()
    held = store.label_ids(collection, region, [entry.label_id for entry in revoked]) if revoked else set()
    return [entry for entry in revoked if entry.label_id in held]


def read_region(store: FingerprintStore, collection: str, region: Region, spill: PatternSpill,
                progress: bool) -> None:
    """Every fingerprint of `region` into `spill`, in one scan of the store; a warning on
    stderr first when Milvus Lite would take more than LITE_WARN_SECONDS (it refuses nothing)."""
    total = store.count(collection, region)
    expected = store.read_seconds(total)
    if expected > LITE_WARN_SECONDS:
        print(f"warning: Milvus Lite reads the {total:,} fingerprints of {region} in about {expected / 60:.0f} minutes "
              "(as measured on 2 loaded cores: a pass over all of them for each page of 16,384, so the time grows "
              "with the square of the region's size); a Milvus server (--milvus http://host:19530) read 1,000,000 "
              "in 3 minutes there", file=sys.stderr)
    with tqdm(total=total, desc=f"reading {region}", unit="fingerprint", disable=not progress) as shown:
        for page in store.pages(collection, region):
            spill.add(page.label_ids, page.patterns, page.copies, page.vectors)
            shown.update(len(page))


def export_region(uri: str, bundle: Path, out: Path, region: Region, private_key: SigningKey | None = None,
                  options: EnrollOptions | None = None, trusted_keys: Path | None = None,
                  templates: Path | None = None, central: str | None = None, progress: bool = True) -> dict:
    """Write the bundle of `region` to `out` from the store at `uri` and the model of
    `bundle`, its revocations carried (and the `central` registry's, given its URL); returns a
    report. Holds both bundles' locks (`bundle_lock`) throughout. The store is read in one
    scan, split by pattern into files beside `out` (`trainer.pattern_spill`), `progress`
    shown on stderr."""
    started = time.perf_counter()
    options = options or EnrollOptions()
    bundle, out = Path(bundle), Path(out)
    with ExitStack() as locks:
        locks.enter_context(bundle_lock(bundle))
        if home_of(out) != home_of(bundle):  # one bundle, one lock
            locks.enter_context(bundle_lock(out))
        opened = read_for_update(bundle, private_key, trusted_keys)
        manifest = opened.manifest
        fmt = (manifest.shards.model_format if manifest.shards else None) or options.model_format \
            or manifest.model_format
        classes = list(manifest.pattern_classes or [])
        name = collection_name(manifest, fmt)
        with FingerprintStore(uri) as store:
            if not store.open_collection(name, int(manifest.embedding_dim or 0), create=False) \
                    or not store.count(name, region):
                raise PufError(f"the fingerprint store {store.uri} holds no fingerprint of {region} from this "
                               f"bundle's {fmt} model (collection {name}): enroll with --milvus and --region first")
            known = [Revoked.load(bundle, manifest), replaced_revocations(out)]
            added = central_revocations(central, store, name, region)
            revoked_ids = {e.label_id for e in added} | {i for r in known for i in r.listing.label_ids}
            found: dict[str, tuple[str | None, np.ndarray]] = {}
            with BundleUpdate(opened, out) as update:
                for old in (manifest.shards.entries if manifest.shards else {}).values():
                    for name_in_bundle in old.named_files().values():
                        if name_in_bundle is not None:
                            update.remove(name_in_bundle)
                section = new_section(manifest, fmt)
                ensure_templates(update, bundle, manifest, templates)
                budget = shard_budget(update.manifest, options, store.count(name, region), [])
                genuine_cosine = genuine_cosine_of(options, update.manifest)
                shards: dict[str, ShardEntry] = {}
                entries: dict[str, dict] = {}
                spill = locks.enter_context(PatternSpill(Path(locks.enter_context(TemporaryDirectory(
                    prefix=".export-", dir=out.parent))), classes, int(manifest.embedding_dim or 0)))
                read_started = time.perf_counter()
                read_region(store, name, region, spill, progress)
                read_seconds = time.perf_counter() - read_started
                for class_index, pattern in enumerate(classes):
                    label_ids, vectors = spill.rows(pattern)
                    gone = np.isin(np.array(label_ids, dtype=str), list(revoked_ids))
                    for label_id in dict.fromkeys(np.array(label_ids, dtype=str)[gone].tolist()):
                        found[label_id] = (pattern, vectors[np.array(label_ids, dtype=str) == label_id])
                    label_ids, vectors = [i for i, g in zip(label_ids, gone, strict=True) if not g], vectors[~gone]
                    if not label_ids:
                        continue
                    written_entry = write_shard(update, bundle, class_index, None, vectors, label_ids, budget,
                                                options, genuine_cosine)
                    shards[pattern] = ShardEntry.from_dict(pattern, written_entry, MANIFEST)
                    entries[pattern] = written_entry
                approximate = check_score_errors(update.manifest, options, entries, store.count(name, region), [])
                oversized = check_calibrated_size(update.manifest, entries)
                section.classes = shards
                close_section(section, classes, options)
                section.extra["region"] = {"product": region.product, "region": region.region}
                section.enrollments = [{"time": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
                                        "source": f"{store.uri} {name} {region}", "labels": section.labels,
                                        "vectors": section.vectors}]
                update.manifest.shards = section
                for name_in_bundle in REVOKED_FILES:
                    update.remove(name_in_bundle)
                carried = combined(known, added, found, int(manifest.embedding_dim or 0)) if revoked_ids else None
                if carried is not None:
                    write_revoked(update, carried)
                update.manifest.sequence = max(update.manifest.release.sequence, replaced_sequence(out))
                written = update.commit(private_key, options.valid_days, trusted_keys=trusted_keys)
    return {"bundle": str(out), "region": str(region), "store": store.uri, "collection": name,
            "labels": section.labels, "vectors": section.vectors, "shards": len(section.entries),
            "bundle_bytes": sum(v.bytes or 0 for v in written.file_entries.values()),
            "signed_by": written.signer, "sequence": written.release.sequence,
            "revoked": sorted(revoked_ids), "revoked_in_region": sorted(found),
            "approximate_scores": {p: e["score_error"] for p, e in approximate.items()}, "oversized_shards": oversized,
            "read_seconds": round(read_seconds, 2), "seconds": round(time.perf_counter() - started, 2)}


def describe(report: dict) -> str:
    """The report as a line for people."""
    return (f"bundle {report['bundle']}: {report['labels']} labels ({report['vectors']} vectors) of {report['region']} "
            f"in {report['shards']} shards from {report['store']}, {len(report['revoked'])} revoked, "
            f"{report['bundle_bytes'] / 1e6:.1f} MB, "
            f"sequence {report['sequence']}, {report['seconds']} s; signed by "
            f"{report['signed_by'] or 'NOBODY (no --key: devices will refuse it)'}"
            + (f"\nNOT CALIBRATED: {report['oversized_shards']}" if report.get("oversized_shards") else ""))
