"""The README's walkthroughs link into the code (path#Lnn): every link must name a file of
the repository and a line inside it, and a link named after a definition must land on it."""

import os
import re

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
LINK = re.compile(r"\[([^\]]+)\]\(([\w./]+\.py)(?:#L(\d+))?\)")


def _links():
    with open(os.path.join(ROOT, "README.md"), encoding="utf-8") as f:
        return LINK.findall(f.read())


def test_readme_has_code_links():
    assert len(_links()) >= 20


def test_every_code_link_lands_in_its_file():
    for text, path, line in _links():
        full = os.path.join(ROOT, path)
        assert os.path.isfile(full), f"README links to {path}, which does not exist"
        if not line:
            continue
        with open(full, encoding="utf-8") as f:
            lines = f.read().splitlines()
        assert int(line) <= len(lines), f"README links to {path}#L{line}, past its end"
        name = text.replace("\\", "").strip("`").split(".")[-1]
        if name.isidentifier() and re.search(rf"^\s*(class|def)\s+{name}\b|^{name}\b",
                                             "\n".join(lines), re.M):
            target = lines[int(line) - 1]
            assert re.search(rf"\b{name}\b", target), (
                f"README's link [{text}]({path}#L{line}) lands on {target.strip()!r}"
            )
