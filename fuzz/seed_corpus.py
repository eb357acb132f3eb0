#!/usr/bin/env python3
"""Seed the fuzz corpora from the shared wire vectors (stdlib only).

usage: seed_corpus.py VECTORS_DIR CORPUS_DIR

- corpus/frame_decode/: every frame of frames.json, frames_compact.json and
  invalid_frames.json, as raw bytes.
- corpus/descriptor_validate/: every descriptor found inside those frames
  (any CBOR map carrying both "id" and "signature" keys, cut out byte-exact
  with a minimal CBOR walker), plus the Appendix C.3 canonical CBOR from
  descriptors.json.

File names are derived from the vector names, so re-running overwrites the
same seeds instead of piling up copies.
"""
import json
import os
import sys


class Cbor:
    """Just enough CBOR to find item boundaries (definite and indefinite)."""

    def __init__(self, data):
        self.d = data

    def head(self, i):
        b = self.d[i]
        major, info = b >> 5, b & 0x1F
        i += 1
        if info < 24:
            return major, info, i
        if info in (24, 25, 26, 27):
            n = 1 << (info - 24)
            if i + n > len(self.d):
                raise ValueError("truncated head")
            return major, int.from_bytes(self.d[i:i + n], "big"), i + n
        if info == 31:
            return major, None, i
        raise ValueError("reserved additional info")

    def item(self, i, found, depth=0):
        """Returns the end of the item at i; appends descriptor spans to found."""
        if depth > 32:
            raise ValueError("too deep")
        start = i
        major, arg, i = self.head(i)
        if major in (0, 1, 7):
            return i
        if major in (2, 3):
            if arg is None:
                while self.d[i] != 0xFF:
                    i = self.item(i, found, depth + 1)
                return i + 1
            return i + arg
        if major == 6:
            return self.item(i, found, depth + 1)
        if major == 4:
            if arg is None:
                while self.d[i] != 0xFF:
                    i = self.item(i, found, depth + 1)
                return i + 1
            for _ in range(arg):
                i = self.item(i, found, depth + 1)
            return i
        # map
        keys = set()
        n = 0
        while (arg is None and self.d[i] != 0xFF) or (arg is not None and n < arg):
            k0 = i
            i = self.item(i, found, depth + 1)
            key = self.d[k0:i]
            if 0x60 <= key[0] <= 0x77:
                keys.add(bytes(key[1:]).decode("utf-8", "replace"))
            i = self.item(i, found, depth + 1)
            n += 1
        if arg is None:
            i += 1
        if {"id", "signature"} <= keys:
            found.append(self.d[start:i])
        return i


def write(dir_, name, data):
    os.makedirs(dir_, exist_ok=True)
    with open(os.path.join(dir_, name), "wb") as f:
        f.write(data)


def main():
    vectors, corpus = sys.argv[1], sys.argv[2]
    frames_dir = os.path.join(corpus, "frame_decode")
    desc_dir = os.path.join(corpus, "descriptor_validate")
    n_frames = n_desc = 0
    for file in ("frames.json", "frames_compact.json", "invalid_frames.json"):
        with open(os.path.join(vectors, file)) as f:
            entries = json.load(f)
        stem = file[: -len(".json")]
        for k, entry in enumerate(entries):
            raw = bytes.fromhex(entry["hex"])
            name = f"{stem}-{k:02d}-{entry.get('name', 'frame')}"
            write(frames_dir, name, raw)
            n_frames += 1
            found = []
            try:
                Cbor(raw).item(24, found)
            except (ValueError, IndexError):
                pass  # some invalid frames are not CBOR at all
            for j, d in enumerate(found):
                write(desc_dir, f"{name}-desc{j}", d)
                n_desc += 1
    with open(os.path.join(vectors, "descriptors.json")) as f:
        for k, entry in enumerate(json.load(f)):
            for field, value in entry.items():
                if "cbor" in field and isinstance(value, str):
                    write(desc_dir, f"descriptors-{k:02d}-{field}", bytes.fromhex(value))
                    n_desc += 1
    print(f"seeded {n_frames} frames into {frames_dir}, {n_desc} descriptors into {desc_dir}")
    if n_frames == 0 or n_desc == 0:
        sys.exit("no seeds found: are the vectors where expected?")


if __name__ == "__main__":
    main()
