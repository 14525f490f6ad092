"""The MIT-BIH Arrhythmia Database as PhysioNet publishes it (mitdb 1.0.0): its 48 record ids, a folder of
its WFDB records listed and checked, and the download into a cache folder (``--source physionet``).

:mod:`heartlab.builders.mitbih` builds the beat files from the records these functions find or fetch.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

from loguru import logger

from heartlab.errors import HeartlabError

# The 48 records of the database (PhysioNet mitdb 1.0.0).
MITDB_RECORDS = tuple(
    ["100", "101", "102", "103", "104", "105", "106", "107", "108", "109", "111", "112", "113", "114", "115", "116", "117", "118", "119", "121", "122", "123", "124", "200", "201", "202", "203", "205", "207", "208", "209", "210", "212", "213", "214", "215", "217", "219", "220", "221", "222", "223", "228", "230", "231", "232", "233", "234"]
)
PHYSIONET_DOC = "https://physionet.org/content/mitdb/1.0.0/"


def list_records(source: Path, records: Sequence[str] | None = None) -> list[str]:
    """The record ids to build from ``source``: ``records`` if given, else those named in its ``RECORDS``
    file, else every ``*.hea`` header. Checks that each has its header, signal and annotation file."""
    if not source.exists():
        raise HeartlabError(
            f"{source}: no such folder; pass --source with the folder holding the MIT-BIH records "
            f"(NNN.hea, NNN.dat, NNN.atr), or --source physionet to download them"
        )
    if not source.is_dir():
        raise HeartlabError(f"{source}: not a folder; --source takes the folder holding the MIT-BIH records")
    if records:
        ids = list(dict.fromkeys(records))
    elif (source / "RECORDS").is_file():
        ids = (source / "RECORDS").read_text().split()
    else:
        ids = sorted(p.stem for p in source.glob("*.hea"))
    if not ids:
        raise HeartlabError(
            f"{source}: no WFDB records found (no RECORDS file and no *.hea headers); "
            f"pass the folder of the MIT-BIH Arrhythmia Database ({PHYSIONET_DOC})"
        )
    problems = []
    for rid in ids:
        missing = [f"{rid}.{ext}" for ext in ("hea", "dat", "atr") if not (source / f"{rid}.{ext}").is_file()]
        if missing:
            problems.append(f"record {rid} lacks {', '.join(missing)}")
    if problems:
        raise HeartlabError(
            f"{source}: {'; '.join(problems[:5])}{' ...' if len(problems) > 5 else ''}. Every record needs its "
            f"header (.hea), signal (.dat) and reference annotations (.atr); copy the missing files from "
            f"{PHYSIONET_DOC} or leave the record out with --records"
        )
    return ids


def _has_records(folder: Path, ids: Sequence[str]) -> bool:
    return all((folder / f"{rid}.{ext}").is_file() for rid in ids for ext in ("hea", "dat", "atr"))


def download_mitdb(download_dir: Path, records: Sequence[str] | None = None) -> Path:
    """Download the MIT-BIH Arrhythmia Database from PhysioNet into ``download_dir`` (skipped when it
    already holds the wanted records)."""
    import wfdb

    wanted = list(records) if records else list(MITDB_RECORDS)
    if _has_records(download_dir, wanted):
        logger.info(f"MIT-BIH: using the records already downloaded in {download_dir}")
        return download_dir
    size = " (about 100 MB)" if len(wanted) == len(MITDB_RECORDS) else ""
    logger.info(f"MIT-BIH: downloading {len(wanted)} record(s) from PhysioNet into {download_dir}{size}")
    try:
        download_dir.mkdir(parents=True, exist_ok=True)
        wfdb.dl_database("mitdb", str(download_dir), records=list(records) if records else "all")
    except Exception as exc:
        first = str(exc).splitlines()[0] if str(exc) else ""
        raise HeartlabError(
            f"could not download the MIT-BIH database from PhysioNet into {download_dir} "
            f"({type(exc).__name__}: {first}); check the internet connection, or download it yourself "
            f"({PHYSIONET_DOC}) and pass its folder with --source DIR"
        ) from None
    if not _has_records(download_dir, wanted):
        raise HeartlabError(
            f"the PhysioNet download into {download_dir} is incomplete (some .hea/.dat/.atr files are "
            f"missing); run the command again, or download the database yourself ({PHYSIONET_DOC}) and pass "
            "--source DIR"
        )
    return download_dir


def default_download_dir() -> Path:
    cache = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(cache) / "heartlab" / "mitdb"
