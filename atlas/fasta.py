"""Streaming protein FASTA reading (plain or gzip) and the sequence checksum.

PLACEHOLDER interface, to be completed by the split stage: keep these names and signatures.
"""

from __future__ import annotations

import hashlib
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class FastaRecord:
    id: str  # first whitespace-separated token of the header
    description: str  # rest of the header
    sequence: str  # residues as read, lines joined
    line: int  # 1-based line number of the header


def sequence_checksum(sequence: str) -> str:
    """SPEC: MD5 hex digest of the upper-case sequence."""
    return hashlib.md5(sequence.upper().encode("ascii")).hexdigest()


def read_fasta(path: str | Path) -> Iterator[FastaRecord]:
    header = None
    chunks: list[str] = []
    header_line = 0
    with open(path) as handle:
        for number, line in enumerate(handle, start=1):
            line = line.rstrip("\r\n")
            if line.startswith(">"):
                if header is not None:
                    name, _, description = header.partition(" ")
                    yield FastaRecord(name, description, "".join(chunks), header_line)
                header, chunks, header_line = line[1:], [], number
            elif line:
                chunks.append(line.strip())
    if header is not None:
        name, _, description = header.partition(" ")
        yield FastaRecord(name, description, "".join(chunks), header_line)
