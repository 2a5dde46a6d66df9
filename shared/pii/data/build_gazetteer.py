"""Rebuild the name gazetteer shipped beside this file.

Sources: the US Census 1990 name frequency files as vendored by the `names` PyPI package (0.3.0:
dist.male.first, dist.female.first, dist.all.last) and a plain English word list (Debian `wamerican`,
/usr/share/dict/american-english). A name that is also a lower-case dictionary word ("Will", "Young",
"Rose") is marked ambiguous with a trailing `*`: the recognizer then needs stronger evidence for it.

    python shared/pii/data/build_gazetteer.py NAMES_DIR [WORDS_FILE]
"""

from __future__ import annotations

import gzip
import sys
from pathlib import Path

SURNAME_LIMIT = 40_000


def _read_census(path: Path, limit: int | None = None) -> list[str]:
    out: list[str] = []
    for line in path.read_text().splitlines():
        parts = line.split()
        if parts:
            out.append(parts[0].lower())
        if limit is not None and len(out) >= limit:
            break
    return out


def main() -> None:
    names_dir = Path(sys.argv[1])
    words_file = Path(sys.argv[2] if len(sys.argv) > 2 else "/usr/share/dict/american-english")
    common = {w.strip() for w in words_file.read_text(errors="ignore").splitlines() if w.strip().islower()}
    firsts = sorted(set(_read_census(names_dir / "dist.male.first") + _read_census(names_dir / "dist.female.first")))
    lasts = _read_census(names_dir / "dist.all.last", SURNAME_LIMIT)
    here = Path(__file__).parent
    for fname, names in (("first_names.txt.gz", firsts), ("surnames.txt.gz", sorted(set(lasts)))):
        lines = [n + ("*" if n in common else "") for n in names if len(n) > 1]
        with gzip.open(here / fname, "wt", encoding="utf-8", compresslevel=9) as fh:
            fh.write("\n".join(lines) + "\n")
        print(fname, len(lines), "ambiguous:", sum(1 for x in lines if x.endswith("*")))
    # Lower-case words that are no census name: a capitalised one is a sentence start or a product, not a
    # person. Plurals of a listed word are recognised at run time, so they are left out here.
    everyone = set(firsts) | set(lasts)
    plain = {w for w in common if w.isalpha() and w.isascii() and len(w) >= 2} - everyone
    base = sorted(w for w in plain if not (w.endswith("s") and w[:-1] in plain))
    with gzip.open(here / "common_words.txt.gz", "wt", encoding="utf-8", compresslevel=9) as fh:
        fh.write("\n".join(base) + "\n")
    print("common_words.txt.gz", len(base))


if __name__ == "__main__":
    main()
