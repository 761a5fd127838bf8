"""Every verb refuses bad input with a message, never a traceback (issue 22, "No tracebacks").

A table of command lines over every verb (missing, corrupt, huge, nested, NaN, inf, negative,
zero, unicode, ``../``, empty-string and unwritable inputs), each with the words its message
must hold: the option or the file at fault. Each runs through `edge_app.cli.main` in this
process (argparse and the verbs write to the captured stderr exactly as in a shell), and a
sample also as ``python -m edge_app.cli`` in a subprocess, the real path. Every one must exit 2
with no traceback (or, where a batch job goes on past what it cannot read or `puf verify` gives
its verdict "unreadable", that status, the file named in its report).

Each argv is a shell line: ``@NAME@`` stands for a fixture file of `bad_files`.

Left to the engineers who own them (and out of this table until their work is merged): a junk
pattern_templates.npz (signing), a sync file with a lone surrogate (journal sync), a read during
a bundle swap and ids such as ``../x`` for a factory or a device (ids and swaps).
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from edge_app.cli import EXIT_CRASH, main

ROOT = Path(__file__).resolve().parents[1]
DEFAULT_BUNDLE = ROOT / "models" / "default"

# (shell line, words the message must hold (any case), exit status)
Case = tuple[str, tuple[str, ...], int]


def case(line: str, *words: str, status: int = 2) -> Case:
    return line, words, status


NUMBERS = ("nan", "inf", "-1", "0")
SIGNED = "--bundle @ENROLLED@ --trusted-keys @TRUSTED@"  # the small signed bundle of tests.bundle_support

CASES: list[Case] = [
    # --- patterns
    case("patterns @MISSING@", "nope"),
    case("patterns ''", "source"),
    case("patterns @CORRUPT_JSON@", "corrupt.json"),
    case("patterns @DEEP_JSON@", "nested"),
    case("patterns @EMPTY@", "empty.json"),
    case("patterns @CORRUPT_PNG@", "corrupt.png"),
    case("patterns @UNICODE_DIR@", "ünï"),
    case("patterns ../../../../../etc/passwd", "etc/passwd"),
    case("patterns font:nofont:AB", "nofont"),
    case("patterns font::", "font"),
    case("patterns builtin --out /proc/nope/x.json", "--out", "/proc"),
    case("patterns builtin --out ''", "--out", "empty"),
    case("patterns builtin --sheet /proc/nope/x.png", "--sheet", "/proc"),
    case("patterns builtin --out @FILE_AS_DIR@/x.json", "--out", "not a folder"),
    *(case(f"patterns builtin --label-um {v}", "--label-um") for v in NUMBERS),
    *(case(f"patterns builtin --glyph-um {v}", "--glyph-um") for v in NUMBERS),
    # --- design
    case("design d --fields 100000x100000", "--fields"),
    case("design d --fields 0x3", "--fields"),
    case("design d --fields -1x2", "--fields"),
    case("design d --fields abc", "--fields"),
    case("design d --fields ''", "--fields"),
    case("design d --labels 1000000x1", "--labels"),
    case("design d --labels 0x0", "--labels"),
    *(case(f"design d --{option} {v}", word)  # the layout's and the laser's own checks, naming the quantity
      for option, word in (("label-um", "label"), ("border-um", "border"), ("pitch-um", "pitch"),
                           ("glyph-um", "glyph"), ("power-mw", "mW"), ("exposure-ms", "exposure"))
      for v in NUMBERS),
    *(case(f"design d --{option} {v}", f"--{option}")
      for option in ("feed-mm-min", "mark-speed-mm-s", "jump-speed-mm-s") for v in NUMBERS),
    case("design d --laser-origin-mm nan,nan", "--laser-origin-mm"),
    case("design d --laser-origin-mm inf,0", "--laser-origin-mm"),
    case("design d --laser-origin-mm 1,2,3", "--laser-origin-mm"),
    case("design d --laser-origin-mm ''", "--laser-origin-mm"),
    case("design d --power-calibration @DEEP_JSON@", "nested"),
    case("design d --power-calibration @MISSING@", "nope"),
    case("design d --power-calibration @CORRUPT_JSON@", "corrupt.json"),
    case("design d --power-calibration @EMPTY@", "empty.json"),
    case("design d --power-calibration @NAN_POINTS@", "nan_points.json"),
    case("design d --calibration @DEEP_JSON@", "nested"),
    case("design d --calibration @MISSING@", "nope"),
    case("design d --calibration @CORRUPT_JSON@", "corrupt.json"),
    case("design d --calibration @NAN_POINTS@", "nan_points.json"),
    case("design d --seed -1", "--seed"),
    case("design d --seed 1e99", "--seed"),
    case("design d --pattern-set @MISSING@", "nope"),
    case("design d --pattern-set @DEEP_JSON@", "nested"),
    case("design d --patterns ,,,", "--patterns"),
    case("design d --patterns nosuchglyph", "nosuchglyph"),
    case("design d --batch-id ../evil", "../evil"),
    case("design d --batch-id ''", "batch"),
    case("design d --batch-id Ünïcødé✓", "Ünïcødé✓"),
    case("design d --batch-id 'a\"b'", "a\"b"),
    case("design /proc/nope/B1", "/proc"),
    case("design ''", "empty"),
    case("design @BATCH@", "--force"),
    # --- etch
    case("etch @MISSING@ --sim", "nope"),
    case("etch @EMPTY_DIR@ --sim", "empty_dir"),
    case("etch @BATCH@", "--sim"),
    case("etch @BATCH@ --sim --baud 0", "--baud"),
    case("etch @BATCH@ --sim --baud -1", "--baud"),
    case("etch @BATCH@ --board -1 --laser galvo", "--board"),
    case("etch @BATCH@ --sim --from-line 0", "--from-line"),
    case("etch @BATCH@ --sim --from-line -1", "--from-line"),
    case("etch @BATCH@ --sim --from-line 99999999", "--from-line"),
    # the galvo's own checks, naming the setting
    *(case(f"etch @BATCH@ --sim --laser galvo --lens-field-mm {v}", "lens field", v) for v in NUMBERS),
    case("etch @BATCH@ --sim --laser galvo --lens-bits 0", "lens field", "0 bits"),
    case("etch @BATCH@ --sim --laser galvo --lens-bits -1", "lens field", "-1 bits"),
    case("etch @BATCH@ --sim --laser galvo --lens-centre-mm nan,0", "--lens-centre-mm"),
    case("etch @BATCH@ --sim --laser galvo --galvo-power-calibration @DEEP_JSON@", "nested"),
    case("etch @BATCH@ --sim --laser galvo --galvo-power-calibration @MISSING@", "nope"),
    case("etch @BATCH@ --sim --laser galvo --galvo-power-calibration @CORRUPT_JSON@", "corrupt.json"),
    *(case(f"etch @BATCH@ --sim --laser galvo --frequency-khz {v}", "frequency khz", v) for v in NUMBERS),
    case("etch @BATCH@ --sim --laser galvo --pulse-width-ns -1", "pulse width"),
    case("etch @BATCH@ --sim --laser galvo --laser-on-delay-us nan", "laser on delay"),
    case("etch @BATCH@ --sim --laser galvo --jump-delay-us inf", "jump delay"),
    case("etch @BATCH@ --sim --film-style nosuchstyle", "nosuchstyle"),
    case("etch @BATCH@ --sim --film-style grain_um=nan", "grain_um"),
    case("etch @BATCH@ --sim --film-style grain_um=-1", "grain_um"),
    case("etch @BATCH@ --sim --film-style contrast=abc", "contrast"),
    case("etch @BATCH@ --sim --film-style grain_µm=1", "grain_µm"),
    case("etch @BATCH@ --sim --film-seed -1", "--film-seed"),
    case("etch @BATCH@ --port /proc/nope", "/proc/nope"),
    # --- photograph
    case("photograph @MISSING@ --sim", "nope"),
    case("photograph @EMPTY_DIR@ --sim", "empty_dir"),
    case("photograph @BATCH@ --sim --workers -1", "--workers"),
    case("photograph @BATCH@ --sim --workers 0", "--workers"),
    case("photograph @BATCH@ --sim --workers 1e9", "--workers"),
    *(case(f"photograph @BATCH@ --sim --pixel-size-um {v}", "--pixel-size-um") for v in NUMBERS),
    case("photograph @BATCH@ --sim --positions @MISSING@", "nope"),
    case("photograph @BATCH@ --sim --positions @CORRUPT_JSON@", "corrupt.json"),
    case("photograph @BATCH@ --sim --positions @DEEP_JSON@", "deep.json"),
    case("photograph @BATCH@ --sim --positions @EMPTY@", "empty.json"),
    case("photograph @BATCH@ --mm-config @MISSING@", "nope"),
    case("photograph @BATCH@ --mm-config @CORRUPT_JSON@", "corrupt.json"),
    # --- segment
    case("segment @MISSING@", "nope"),
    case("segment ''", "batch_dir"),
    case("segment @EMPTY_DIR@", "empty_dir"),
    # a batch job skips what it cannot read, and says so
    case("segment @CORRUPT_PNG_DIR@", "unreadable", "corrupt.png", status=0),
    case("segment @TRUNCATED_TIF_DIR@", "unreadable", "truncated.tif", status=0),
    case("segment @OME_OVERFLOW_DIR@", "puf.field"),
    case("segment @BATCH@ --crop-size -1", "--crop-size"),
    case("segment @BATCH@ --crop-size 0", "--crop-size"),
    case("segment @BATCH@ --crop-size 100000000", "--crop-size"),
    case("segment @BATCH@ --max-shift-um -1", "--max-shift-um"),
    case("segment @BATCH@ --max-shift-um nan", "--max-shift-um"),
    case("segment @BATCH@ --rotation-deg nan", "--rotation-deg"),
    case("segment @BATCH@ --rotation-deg inf", "--rotation-deg"),
    case("segment @BATCH@ --labels 0x0", "--labels"),
    *(case(f"segment @PNG_DIR@ --{option} {v}", word)  # the layout's own checks, naming the quantity
      for option, word in (("label-um", "label"), ("border-um", "border"), ("pitch-um", "pitch")) for v in NUMBERS),
    *(case(f"segment @PNG_DIR@ --{option} {v}", f"--{option}") for option in ("glyph-um", "pixel-um") for v in NUMBERS),
    case("segment @PNG_DIR@ --templates @MISSING@", "nope"),
    case("segment @PNG_DIR@ --order @MISSING@", "nope"),
    case("segment @PNG_DIR@ --order @CORRUPT_PNG@", "corrupt.png"),
    case("segment @PNG_DIR@ --layout @DEEP_JSON@", "nested"),
    case("segment @PNG_DIR@ --layout @CORRUPT_JSON@", "corrupt.json"),
    case("segment @PNG_DIR@ --pattern-set @DEEP_JSON@", "nested"),
    case("segment @PNG_DIR@ --batch-id ../evil", "../evil"),
    case("segment @PNG_DIR@ --batch-id 批次", "批次"),
    case("segment @PNG_DIR@ --registry /proc/nope/r.sqlite", "/proc"),
    case("segment @PNG_DIR@ --registry @CORRUPT_SQLITE@", "corrupt.sqlite"),
    # --- train
    case("train run --config @DEEP_JSON@", "nested"),
    case("train run --config @MISSING@", "nope"),
    case("train run --config @CORRUPT_JSON@", "corrupt.json"),
    case("train run --data @EMPTY_DIR@ --cluster @DEEP_JSON@", "--cluster", "nested"),
    case("train run --data @EMPTY_DIR@ --cluster @MISSING@", "--cluster", "nope"),
    case("train run --data @EMPTY_DIR@ --cluster '{\"cluster\":'", "--cluster"),
    case("train run --data @EMPTY_DIR@ --cluster '{\"cluster\": {\"worker\": [\"a:1\"]}, "
         "\"task\": {\"index\": 1e400}}'", "--cluster"),
    case("train run --steps -1", "--steps"),
    case("train run --steps 0", "--steps"),
    case("train run --batch-size 0", "--batch-size"),
    case("train run --batch-size -1", "--batch-size"),
    case("train run --set nokey", "--set"),
    case("train run --set nosuchkey=1", "nosuchkey"),
    case("train run --set lr=nan", "lr"),
    case("train run --set lr=" + "[" * 5000, "lr"),
    case("train run --backbone nosuch", "nosuch"),
    case("train run --init @MISSING@", "nope"),
    case("train run --init @EMPTY_DIR@", "empty_dir"),
    case("train run --materialize -1 --data @EMPTY_DIR@", "--materialize"),
    case("train run --data @EMPTY_DIR@ --join-timeout -1", "--join-timeout"),
    case("train run --data @EMPTY_DIR@ --join-timeout nan", "--join-timeout"),
    case("train /proc/nope/run", "/proc"),
    # --- export
    case("export @MISSING@ --out b", "nope"),
    case("export @EMPTY_DIR@ --out b", "empty_dir"),
    case("export @EMPTY_DIR@ --out /proc/nope/b", "--out", "/proc"),
    case("export @EMPTY_DIR@ --out ''", "--out"),
    case("export @EMPTY_DIR@ --out b --formats bogus", "formats", "bogus"),
    case("export @EMPTY_DIR@ --out b --far nan", "--far"),
    case("export @EMPTY_DIR@ --out b --far -1", "--far"),
    case("export @EMPTY_DIR@ --out b --far 2", "--far"),
    # --- enroll
    case("enroll --bundle @MISSING@ --labels @MISSING@", "nope"),
    case("enroll --bundle @EMPTY_DIR@ --labels @EMPTY_DIR@", "empty_dir"),
    case("enroll --bundle @DEFAULT@ --labels @CORRUPT_SQLITE@", "corrupt.sqlite"),
    case("enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --key @MISSING@", "nope"),
    case("enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --key @CORRUPT_JSON@", "corrupt.json"),
    case("enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --rotations 0", "--rotations"),
    case("enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --rotations -1", "--rotations"),
    case("enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --augmented -1", "--augmented"),
    case("enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --thumbnails -1", "--thumbnails"),
    *(case(f"enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --memory-mb {v}", "--memory-mb") for v in NUMBERS),
    case("enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --capacity -1", "--capacity"),
    case("enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --exact-max -1", "--exact-max"),
    *(case(f"enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --recall {v}", "recall")
      for v in ("nan", "2", "-1", "0")),
    *(case(f"enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --valid-days {v}", "validity") for v in NUMBERS),
    case("enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --milvus m.db", "--region"),
    case("enroll --bundle @DEFAULT@ --labels @EMPTY_DIR@ --region EU", "--milvus"),
    # --- export-region
    case("export-region --bundle @MISSING@ --milvus m.db --region EU --out r", "nope"),
    case("export-region --bundle @DEFAULT@ --milvus m.db --region EU --out /proc/nope/r", "--out", "/proc"),
    case("export-region --bundle @DEFAULT@ --milvus m.db --region ../x --out r", "region"),
    case("export-region --bundle @DEFAULT@ --milvus m.db --region 'a\"b' --out r", "region"),
    case("export-region --bundle @DEFAULT@ --milvus m.db --region EU --out r --memory-mb nan",
         "--memory-mb"),
    case("export-region --bundle @DEFAULT@ --milvus m.db --region EU --out r --recall 5", "recall"),
    case("export-region --bundle @DEFAULT@ --milvus m.db --region EU --out r --key @MISSING@", "nope"),
    # --- hold-out
    case("hold-out @MISSING@ --batch B1", "nope"),
    case("hold-out @CORRUPT_SQLITE@ --batch B1", "corrupt.sqlite"),
    case("hold-out @EMPTY_DIR@ --batch B1", "empty_dir"),
    case("hold-out ''", "REGISTRY", "empty"),
    case("hold-out @CORRUPT_SQLITE@ --field 3", "--field", "--batch"),
    case("hold-out @CORRUPT_SQLITE@ --batch '../x'", "batch id", "not allowed"),
    case("hold-out @CORRUPT_SQLITE@ --label 'a\"b'", "label id", "not allowed"),
    case("hold-out @CORRUPT_SQLITE@ --batch B1 --field -1", "--field"),
    # --- unenroll
    case("unenroll --bundle @MISSING@ --batch B1", "nope"),
    case("unenroll --bundle @EMPTY_DIR@ --batch B1", "empty_dir"),
    case("unenroll --bundle '' --batch B1", "--bundle", "empty"),
    case("unenroll --bundle @ENROLLED@", "--batch", "--label"),
    case("unenroll --bundle @ENROLLED@ --label '../x'", "label id", "not allowed"),
    case("unenroll --bundle @ENROLLED@ --batch B1 --key @MISSING@", "nope"),
    case("unenroll --bundle @ENROLLED@ --batch B1 --key @CORRUPT_PNG@", "corrupt.png"),
    case("unenroll --bundle @ENROLLED@ --batch B1 --valid-days nan", "validity", "nan"),
    case("unenroll --bundle @ENROLLED@ --batch B1 --registry @CORRUPT_SQLITE@", "corrupt.sqlite"),
    # --- revoke
    case("revoke --bundle @ENROLLED@ --key @MISSING@ V1-0000-00", "nope"),
    case("revoke --bundle @ENROLLED@ --key @CORRUPT_PNG@ V1-0000-00", "corrupt.png"),
    case("revoke --bundle @ENROLLED@ --key @CORRUPT_PNG@", "give the labels", "--from"),
    case("revoke --bundle @ENROLLED@ --key @CORRUPT_PNG@ 'a\"b'", "label id", "not allowed"),
    case("revoke --bundle @ENROLLED@ --key @CORRUPT_PNG@ --from @MISSING@", "nope"),
    case("revoke --bundle @ENROLLED@ --key @CORRUPT_PNG@ --from @CORRUPT_PNG@", "corrupt.png"),
    case("revoke --bundle @ENROLLED@ --key @CORRUPT_PNG@ V1-0000-00 --reason ''", "--reason"),
    # --- root
    case("root show @MISSING@", "nope"),
    case("root show @CORRUPT_JSON@", "corrupt.json"),
    case("root show @DEEP_JSON@", "deep.json"),
    case("root show @EMPTY@", "empty.json"),
    case("root init @EMPTY_DIR@/r.json --root @MISSING@ --threshold 1 --signer @MISSING@", "nope"),
    case("root init @EMPTY_DIR@/r.json --root @CORRUPT_PNG@ --threshold 1 --signer @CORRUPT_PNG@", "corrupt.png"),
    case("root sign @CORRUPT_JSON@ --key @MISSING@", "corrupt.json"),
    case("root attach @MISSING@ --key @MISSING@", "nope"),
    # --- keygen
    case("keygen ''", "prefix", "empty"),
    case("keygen /proc/nope/k", "cannot write /proc/nope/k.key"),
    case("keygen @FILE_AS_DIR@/k", "cannot write", "a_file/k.key"),
    # --- queries
    case("queries @MISSING@ --out q --bundle @DEFAULT@", "nope"),
    case("queries @EMPTY_DIR@ --out q --bundle @DEFAULT@", "no photos", "empty_dir"),
    case("queries @PNG_DIR@ --out q --bundle @MISSING@", "nope"),
    case("queries @PNG_DIR@ --out q --bundle @EMPTY_DIR@", "empty_dir"),
    case("queries @CORRUPT_PNG@ --out q --bundle @DEFAULT@", "corrupt.png"),
    case("queries @EMPTY_DIR@ --out /proc/nope/q --bundle @DEFAULT@", "--out", "/proc"),
    *(case(f"queries @EMPTY_DIR@ --out q --bundle @DEFAULT@ --label-px {v}", "--label-px")
      for v in (*NUMBERS, "abc")),
    case("queries @PNG_DIR@ --out q --bundle @BATCH@/pattern_templates.npz --registry @CORRUPT_SQLITE@",
         "corrupt.sqlite"),
    # --- evaluate
    case("evaluate --bundle @MISSING@ --queries @MISSING@", "nope"),
    case("evaluate --bundle @DEFAULT@ --queries @MISSING@", "no enrolled labels"),
    case("evaluate --bundle @EMPTY_DIR@ --queries @EMPTY_DIR@", "empty_dir"),
    *(case(f"evaluate --bundle @DEFAULT@ --queries @EMPTY_DIR@ --far {v}", "--far") for v in (*NUMBERS, "2")),
    case("evaluate --bundle @DEFAULT@ --queries @EMPTY_DIR@ --query-far nan", "--query-far"),
    case("evaluate --bundle @DEFAULT@ --queries @EMPTY_DIR@ --query-far -1", "--query-far"),
    case("evaluate --bundle @DEFAULT@ --queries @EMPTY_DIR@ --deployed-labels -1", "--deployed-labels"),
    case("evaluate --bundle @DEFAULT@ --queries @EMPTY_DIR@ --deployed-labels 0", "--deployed-labels"),
    case("evaluate --bundle @DEFAULT@ --queries @EMPTY_DIR@ --frr-bound nan", "--frr-bound"),
    case("evaluate --bundle @DEFAULT@ --queries @EMPTY_DIR@ --frr-bound 2", "--frr-bound"),
    case("evaluate --bundle @DEFAULT@ --queries @EMPTY_DIR@ --max-queries -1", "--max-queries"),
    case("evaluate --bundle @DEFAULT@ --queries @EMPTY_DIR@ --out /proc/nope/e", "--out", "/proc"),
    case("evaluate --bundle @DEFAULT@ --queries @EMPTY_DIR@ --key @MISSING@", "nope"),
    # --- verify
    # a photo it cannot read is verify's "unreadable" (3), the others still verified
    case(f"verify @MISSING@ {SIGNED}", "unreadable", "nope", status=3),
    case(f"verify '' {SIGNED}", "IMAGE", "empty"),
    case(f"verify @CORRUPT_PNG@ {SIGNED}", "corrupt.png", status=3),
    case(f"verify @TRUNCATED_TIF@ {SIGNED}", "truncated.tif", status=3),
    case(f"verify @EMPTY@ {SIGNED}", "empty.json", status=3),
    case(f"verify @EMPTY_DIR@ {SIGNED}", "unreadable", "empty_dir", status=3),
    case(f"verify @UNICODE_DIR@/фото.png {SIGNED}", "unreadable", "фото.png", status=3),
    case("verify @CORRUPT_PNG@ --bundle @MISSING@", "nope"),
    case("verify @CORRUPT_PNG@ --bundle @EMPTY_DIR@", "empty_dir"),
    case("verify @CORRUPT_PNG@ --bundle @ENROLLED@ --trusted-keys @MISSING@", "nope"),
    case("verify @CORRUPT_PNG@", "no bundle is installed", "puf device install"),
    case(f"verify @CORRUPT_PNG@ {SIGNED} --threads 0", "threads"),
    case(f"verify @CORRUPT_PNG@ {SIGNED} --threads -1", "threads"),
    case(f"verify @CORRUPT_PNG@ {SIGNED} --threads 1000", "threads"),
    *(case(f"verify @CORRUPT_PNG@ {SIGNED} --label-px {v}", "--label-px") for v in (*NUMBERS, "abc")),
    *(case(f"verify @CORRUPT_PNG@ {SIGNED} --max-pixels {v}", "--max-pixels") for v in (*NUMBERS, "1e999")),
    # --- app (each refused before the window opens)
    case("app --size 0x0", "--size"),
    case("app --size abc", "--size"),
    case("app --size 100000x100000", "--size"),
    case("app --size ''", "--size"),
    case("app --exposure-us -1", "--exposure-us"),
    case("app --exposure-us 0", "--exposure-us"),
    case("app --exposure-us 1000 --gain nan", "--gain"),
    case("app --exposure-us 1000 --gain -1", "--gain"),
    case("app --exposure-us 1000 --gain inf", "--gain"),
    case("app --language xx", "xx"),
    case("app --language 中文", "中文"),
    case("app --language ''", "language"),
    # --- journal
    case("journal list --journal @CORRUPT_SQLITE@", "corrupt.sqlite"),
    case("journal list --journal @MISSING@", "nope"),
    case("journal list --journal @EMPTY_DIR@", "empty_dir"),
    case("journal list --limit -1 --journal j.sqlite", "--limit"),
    case("journal list --limit 0 --journal j.sqlite", "--limit"),
    case("journal export /proc/nope/x.csv --journal @CORRUPT_SQLITE@", "/proc"),
    case("journal export x.csv --journal @CORRUPT_SQLITE@", "corrupt.sqlite"),
    case("journal export '' --journal @CORRUPT_SQLITE@", "empty"),
    case("journal export - --since garbage --journal @CORRUPT_SQLITE@", "--since"),
    case("journal export - --since 2026-13-45 --journal @CORRUPT_SQLITE@", "--since"),
    case("journal push --journal @CORRUPT_SQLITE@", "invalid choice"),
    case("journal identity --journal @CORRUPT_SQLITE@", "corrupt.sqlite"),
    # --- device (provisioning: a home of its own for each row)
    case("device trust @MISSING@", "nope"),
    case("device trust ''", "empty"),
    case("device trust @EMPTY_DIR@", "empty_dir"),
    case("device trust @EMPTY@", "empty.json"),
    case("device trust @CORRUPT_PNG@", "corrupt.png"),
    case("device trust @UNICODE_DIR@/ключ.pub", "ключ.pub"),
    case("device trust @CORRUPT_PNG@ --home /proc/nope", "/proc"),
    case("device trust @CORRUPT_PNG@ --threshold 1", "--threshold", "--root"),
    case("device trust @CORRUPT_PNG@ --root --threshold 0", "--threshold"),
    case("device install @MISSING@", "nope"),
    case("device install ''", "empty"),
    case("device install @EMPTY_DIR@", "empty_dir"),
    case("device install @CORRUPT_PNG@", "corrupt.png"),
    case("device install @ENROLLED@", "trust"),
    case("device install @ENROLLED@ --home /proc/nope", "/proc"),
    # --- registry
    case("registry push @MISSING@ --factory f --central @CENTRAL@", "nope"),
    case("registry push @CORRUPT_SQLITE@ --factory f --central @CENTRAL@", "corrupt.sqlite"),
    case("registry push @CORRUPT_SQLITE@ --factory ''", "--factory"),
    case("registry push @CORRUPT_SQLITE@ --factory f --central bogus://x", "bogus"),
    case("registry push @CORRUPT_SQLITE@ --factory f --central sqlite:////proc/nope/c.db", "/proc"),
    case("registry import @MISSING@ --central @CENTRAL@", "nope"),
    case("registry import @CORRUPT_SYNC@ --central @CENTRAL@", "puf-journal-corrupt.json"),
    case("registry import @DEEP_SYNC@ --central @CENTRAL@", "puf-journal-deep.json"),
    case("registry import @EMPTY_SYNC@ --central @CENTRAL@", "puf-journal-empty.json"),
    case("registry import --central @CENTRAL@", "--journal", "one of the two"),
    case("registry import @EMPTY_SYNC@ --journal @CORRUPT_SQLITE@ --central @CENTRAL@", "one of the two"),
    case("registry import @EMPTY_SYNC@ --again --central @CENTRAL@", "--again"),
    case("registry import --journal @CORRUPT_SQLITE@", "--central"),
    case("registry import --journal @CORRUPT_SQLITE@ --central bogus://x", "bogus"),
    case("registry import --journal @CORRUPT_SQLITE@ --central @CENTRAL@", "corrupt.sqlite"),
    case("registry import --journal @MISSING@ --central @CENTRAL@", "nope"),
    case("registry device dev-1 --at nan,nan --central @CENTRAL@", "latitude", "nan"),
    case("registry device dev-1 --at 91,0 --central @CENTRAL@", "latitude", "91"),
    case("registry device dev-1 --at abc --central @CENTRAL@", "--at"),
    case("registry device '' --central @CENTRAL@", "device"),
    *(case(f"registry alerts --window-hours {v} --central @CENTRAL@", "--window-hours") for v in NUMBERS),
    case("registry alerts --min-km nan --central @CENTRAL@", "--min-km"),
    case("registry alerts --min-km -1 --central @CENTRAL@", "--min-km"),
    case("registry alerts --max-checks -1 --central @CENTRAL@", "--max-checks"),
    case("registry alerts", "--central"),
    case("registry add-device dev-1 @MISSING@ --central @CENTRAL@", "nope"),
    case("registry add-device dev-1 @CORRUPT_PNG@ --central @CENTRAL@", "corrupt.png"),
    case("registry add-device 'a\"b' @CORRUPT_PNG@ --central @CENTRAL@", "device id"),
    case("registry add-device ../x @CORRUPT_PNG@ --central @CENTRAL@", "device id"),
    case("registry add-device '' @CORRUPT_PNG@ --central @CENTRAL@", "device id"),
    # --- demo (each refused before any work)
    case("demo --out /proc/nope", "--out", "/proc"),
    case("demo --out ''", "--out", "empty"),
    case("demo --out @FILE_AS_DIR@/d", "--out", "not a folder"),
    case("demo --out demo --fields 100000x100000", "--fields"),
    case("demo --out demo --fields 0x0", "--fields"),
    case("demo --out demo --fields abc", "--fields"),
    case("demo --out demo --photos -1", "--photos"),
    *(case(f"demo --out demo --held-out {v}", "--held-out") for v in ("nan", "inf", "-1", "1", "2")),
    case("demo --out demo --film nosuchstyle", "nosuchstyle"),
    case("demo --out demo --film grain_um=nan", "grain_um"),
    case("demo --out demo --figures /proc/nope", "--figures", "/proc"),
    # --- simdata (each refused before any work)
    case("simdata /proc/nope", "root", "/proc"),
    case("simdata ''", "root", "empty"),
    case("simdata @FILE_AS_DIR@/d", "root", "not a folder"),
    *(case(f"simdata sim --fields {v}", "--fields") for v in ("0x0", "100000x100000", "abc")),
    *(case(f"simdata sim --{o} {v}", f"--{o}") for o in ("batches", "workers") for v in ("0", "-1", "nan")),
    *(case(f"simdata sim --{o} -1", f"--{o}") for o in ("microscope-shots", "handheld-shots", "first-seed",
                                                       "capture-seed")),
    case("simdata sim --film-style nosuchstyle", "nosuchstyle"),
    case("simdata sim --film-style grain_um=nan", "grain_um"),
    case("simdata sim --pattern-set @MISSING@", "nope"),
    # --- bench (each refused before any work)
    case("bench --out /proc/nope", "--out", "/proc"),
    case("bench --out ''", "--out"),
    case("bench --out bench --bundle @MISSING@", "nope"),
    case("bench --out bench --bundle @EMPTY_DIR@", "empty_dir"),
    *(case(f"bench --out bench --{option} -1", option)
      for option in ("labels", "augmented", "vectors", "patterns", "genuine", "counterfeit", "clones", "workers")),
    case("bench --out bench --patterns 45", "44 pattern classes, not 45"),
    *(case(f"bench --out bench --{option} 0", option)  # --vectors 0 is the default: as many as labels x copies
      for option in ("labels", "augmented", "genuine", "counterfeit", "workers")),
    *(case(f"bench --out bench --memory-mb {v}", "--memory-mb") for v in NUMBERS),
    case("bench --out bench --scaling abc", "--scaling"),
    case("bench --out bench --scaling 1e99", "scaling sizes"),
    case("bench --out bench --scaling -5", "scaling sizes"),
    case("bench --out bench --scaling nan", "--scaling"),
    case("bench --out bench --scaling 1e999", "--scaling"),
    case("bench --out bench --figures /proc/nope", "--figures", "/proc"),
]


@pytest.fixture(scope="module")
def bad_files(tmp_path_factory, enrolled) -> dict[str, str]:
    return make_bad_files(tmp_path_factory.mktemp("bad"), enrolled[0], enrolled[1])


def make_bad_files(root: Path, signed_bundle: Path, trusted_keys: Path) -> dict[str, str]:
    """The files the table's ``@NAME@`` stand for: small, each wrong in its own way."""
    import cv2

    from fabrication.ome_field import write_field

    files: dict[str, Path] = {"MISSING": root / "nope", "DEFAULT": DEFAULT_BUNDLE, "ENROLLED": signed_bundle,
                              "TRUSTED": trusted_keys}

    def write(name: str, data: bytes | str, folder: Path = root) -> Path:
        path = folder / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data if isinstance(data, bytes) else data.encode())
        return path

    deep = "[" * 200_000 + "]" * 200_000
    files["DEEP_JSON"] = write("deep.json", deep)
    files["CORRUPT_JSON"] = write("corrupt.json", '{"points": [[0, 0], [1')
    files["EMPTY"] = write("empty.json", b"")
    files["NAN_POINTS"] = write("nan_points.json", '{"points": [[0, NaN], [1000, Infinity]], "origin_um": [NaN, 0]}')
    files["CORRUPT_PNG"] = write("corrupt.png", b"\x89PNG\r\n\x1a\n" + bytes(range(256)) * 4)
    files["CORRUPT_PNG_DIR"] = write("corrupt_png_dir/corrupt.png", files["CORRUPT_PNG"].read_bytes()).parent
    image = np.random.default_rng(0).integers(0, 255, (400, 400), np.uint8)
    ok, tif = cv2.imencode(".tif", image)
    files["TRUNCATED_TIF"] = write("truncated.tif", tif.tobytes()[: len(tif) // 3])
    files["TRUNCATED_TIF_DIR"] = write("truncated_dir/truncated.tif", files["TRUNCATED_TIF"].read_bytes()).parent
    ome = root / "ome_overflow" / "field.tif"
    ome.parent.mkdir()
    write_field(ome, image, {"batch_id": "B1", "field": "9" * 23, "position_label": "f0", "stage_um": (0, 0),
                             "exposure_ms": 40, "pixel_size_um": 0.6})
    files["OME_OVERFLOW_DIR"] = ome.parent
    ok, png = cv2.imencode(".png", image)
    files["PNG_DIR"] = write("png_dir/field0.png", png.tobytes()).parent
    files["JUNK_NPZ"] = write("junk.npz", b"PK\x03\x04" + b"junk" * 100)
    files["CORRUPT_SQLITE"] = write("corrupt.sqlite", b"SQLite format 3\x00" + b"\xff" * 2000)
    files["EMPTY_DIR"] = root / "empty_dir"
    files["EMPTY_DIR"].mkdir()
    files["UNICODE_DIR"] = root / "ünï cødé ✓"
    files["UNICODE_DIR"].mkdir()
    files["FILE_AS_DIR"] = write("a_file", "not a folder")
    files["CORRUPT_SYNC"] = write("sync/corrupt/puf-journal-corrupt.json", '{"device_id": "dev-1", "checks": [')
    files["DEEP_SYNC"] = write("sync/deep/puf-journal-deep.json", deep)
    files["EMPTY_SYNC"] = write("sync/empty/puf-journal-empty.json", b"")
    files["CENTRAL"] = f"sqlite:///{root / 'central.sqlite'}"
    files["BATCH"] = root / "B1"
    assert main(["design", str(files["BATCH"]), "--fields", "1x1"]) == 0
    return {name: str(path) for name, path in files.items()}


COPIED = ("BATCH", "PNG_DIR", "CORRUPT_PNG_DIR", "TRUNCATED_TIF_DIR", "OME_OVERFLOW_DIR")


def argv_of(line: str, files: dict[str, str], cwd: Path) -> list[str]:
    """The case's argv; a folder of COPIED copied into `cwd` first (a verb that wrongly accepts its
    input changes only its own copy, and a registry made beside the folder is the case's own)."""
    argv = shlex.split(line)
    files = {**files, **{name: str(shutil.copytree(files[name], cwd / Path(files[name]).name))
                         for name in COPIED if f"@{name}@" in line}}
    for name, path in files.items():
        argv = [arg.replace(f"@{name}@", path) for arg in argv]
    return argv


def check(line: str, words: tuple[str, ...], status: int, got: int, stdout: str, stderr: str) -> None:
    """No traceback; the exit status; the words in the message (a refusal's, on stderr; a report's,
    for a job that goes on, on either)."""
    assert "Traceback" not in stderr and got != EXIT_CRASH, f"puf {line}: a traceback\n{stderr}"
    assert got == status, f"puf {line}: exit {got}, not {status}\n{stderr}"
    said = stderr if status == 2 else stdout + stderr
    missing = [w for w in words if w.lower() not in said.lower()]
    assert not missing, f"puf {line}: the message does not name {missing}\n{said}"


def test_the_sweep_covers_every_verb_with_at_least_200_commands():
    from edge_app.cli import installed_verbs

    verbs = {verb.name for verb in installed_verbs()[0]}
    assert len(CASES) >= 200
    assert verbs == {line.split()[0] for line, _, _ in CASES}


@pytest.mark.parametrize(("line", "words", "status"), CASES, ids=[line for line, _, _ in CASES])
def test_a_bad_input_is_refused_with_a_message(line, words, status, bad_files, capsys, monkeypatch, tmp_path):
    monkeypatch.chdir(tmp_path)
    for name in ("PUF_HOME", "PUF_BUNDLE", "PUF_TRUSTED_KEYS", "PUF_REGISTRY", "PUF_CENTRAL", "TF_CONFIG"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("HOME", str(tmp_path))
    try:
        got = main(argv_of(line, bad_files, tmp_path))
    except SystemExit as exit_:  # argparse's usage errors
        got = exit_.code
    captured = capsys.readouterr()
    check(line, words, status, got, captured.out, captured.err)


# The real path, a sample over the verbs: python -m edge_app.cli in a subprocess.
SAMPLE_LINES = {
    "design d --fields 100000x100000", "design d --laser-origin-mm nan,nan",
    "design d --power-calibration @DEEP_JSON@", "patterns builtin --out /proc/nope/x.json", "keygen ''",
    "segment @OME_OVERFLOW_DIR@", "segment @BATCH@ --crop-size -1", "photograph @BATCH@ --sim --workers -1",
    f"verify @CORRUPT_PNG@ {SIGNED}", f"verify @CORRUPT_PNG@ {SIGNED} --threads 0", "demo --out /proc/nope",
    "registry import @DEEP_SYNC@ --central @CENTRAL@", "journal list --journal @CORRUPT_SQLITE@",
    "registry device dev-1 --at nan,nan --central @CENTRAL@", "journal export '' --journal @CORRUPT_SQLITE@",
}
SUBPROCESS_SAMPLE = [c for c in CASES if c[0] in SAMPLE_LINES]


@pytest.mark.parametrize(("line", "words", "status"), SUBPROCESS_SAMPLE, ids=[c[0] for c in SUBPROCESS_SAMPLE])
def test_a_bad_input_is_refused_the_same_in_a_real_process(line, words, status, bad_files, tmp_path):
    env = {"PATH": "/usr/bin:/bin", "HOME": str(tmp_path), "PYTHONPATH": str(ROOT)}
    done = subprocess.run([sys.executable, "-m", "edge_app.cli", *argv_of(line, bad_files, tmp_path)], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120)
    check(line, words, status, done.returncode, done.stdout, done.stderr)


def test_every_line_of_the_subprocess_sample_is_in_the_table():
    assert len(SUBPROCESS_SAMPLE) == len(SAMPLE_LINES)
