#!/usr/bin/env python3
"""Split lines_doubango into train / validation by source document, deterministically.

A document goes to validation when the first 8 hex digits of sha256(source_image) taken mod 4 are 0
(about 25%); all lines of one document land on the same side. Writes names only (no image data):
    python3 tools/mrz-train/split_lines.py $KYCGATE_EVAL_DIR/mrz/lines_doubango/labels.tsv \
        > lib/kycgate-mrz/eval/lines_split.tsv
"""
import hashlib
import sys


def part(source_image):
    h = int(hashlib.sha256(source_image.encode()).hexdigest()[:8], 16)
    return "val" if h % 4 == 0 else "train"


def main():
    rows = open(sys.argv[1], encoding="utf-8").read().splitlines()[1:]
    print("# lines_doubango split by source document: part<TAB>file (tools/mrz-train/split_lines.py)")
    for row in rows:
        cols = row.split("\t")
        if len(cols) >= 3:
            print(f"{part(cols[2])}\t{cols[0]}")


if __name__ == "__main__":
    main()
