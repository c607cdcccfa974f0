"""Write one named section of benchmarks/RESULTS.md, leaving the other sections as they are."""

import os
import platform
import re
import time
from pathlib import Path

from common.files import write_text_atomic

RESULTS = Path(__file__).with_name("RESULTS.md")
HEADER = "# Benchmark results\n\nEach section is written by the script it names; re-run the script to refresh it.\n"


def machine() -> str:
    """One line describing where the figures were taken."""
    return f"{platform.processor() or platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}"


def read_section(name: str, path: Path = RESULTS) -> str:
    """The text of section `name` as write_section wrote it (stamp line included), or "" when absent."""
    text = path.read_text() if path.exists() else ""
    found = re.search(re.escape(f"<!-- begin {name} -->") + "(.*?)" + re.escape(f"<!-- end {name} -->"), text, re.S)
    return found.group(1).strip() if found else ""


def write_section(name: str, command: str, body: str, path: Path = RESULTS) -> None:
    """Replace (or append) the section `name` with `body`, stamped with the command and the machine."""
    text = path.read_text() if path.exists() else HEADER
    start, end = f"<!-- begin {name} -->", f"<!-- end {name} -->"
    stamp = time.strftime("%Y-%m-%d")
    section = (
        f"{start}\n## {name}\n\n`{command}` ({stamp}; {machine()})\n\n{body.strip()}\n{end}"
    )
    pattern = re.compile(re.escape(start) + ".*?" + re.escape(end), re.S)
    if pattern.search(text):
        text = pattern.sub(lambda _: section, text)
    else:
        text = text.rstrip() + "\n\n" + section + "\n"
    write_text_atomic(path, text)
    print(f"wrote section '{name}' of {path}")
