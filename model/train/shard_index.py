"""Random access into WebDataset tars: an index of member offsets, built once per shard.

An epoch plan names samples as (shard, index), so the reader must fetch one sample without streaming
the shard from its start. `tarfile` gives each member's data offset and size in one pass over the
headers (it seeks past the data); members are grouped into samples by webdataset's own key rule
(`base_plus_ext`), and the raw `{"__key__", ext: bytes}` dict a reader returns is decoded by
webdataset's `Decoder` (see model/train/data.py), exactly as a webdataset pipeline would.
"""

from __future__ import annotations

import tarfile
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

from webdataset.tariterators import base_plus_ext


@dataclass(frozen=True)
class SampleMembers:
    key: str
    members: dict[str, tuple[int, int]]  # extension -> (data offset, size) in the tar


def index_shard(path: str | Path) -> list[SampleMembers]:
    """The samples of one shard in tar order; a key's members must be adjacent (as webdataset requires)."""
    samples: list[SampleMembers] = []
    with tarfile.open(path, mode="r:") as tar:
        for member in tar:
            if not member.isreg():
                continue
            key, extension = base_plus_ext(member.name)
            if key is None:
                continue
            if not samples or samples[-1].key != key:
                samples.append(SampleMembers(key, {}))
            elif extension in samples[-1].members:
                raise ValueError(f"{path}: duplicate member {member.name}")
            samples[-1].members[extension.lower()] = (member.offset_data, member.size)
    keys = [sample.key for sample in samples]
    if len(set(keys)) != len(keys):
        raise ValueError(f"{path}: a sample's members are not adjacent")
    return samples


def read_sample(stream: BinaryIO, sample: SampleMembers, url: str) -> dict[str, object]:
    """The raw webdataset sample dict of one indexed sample: {"__key__", "__url__", ext: bytes}."""
    raw: dict[str, object] = {"__key__": sample.key, "__url__": url}
    for extension, (offset, size) in sample.members.items():
        stream.seek(offset)
        raw[extension] = stream.read(size)
    return raw
