#!/usr/bin/env python3
"""Regenerates the option tables in docs/configuration.md from uturnd itself
(`uturnd --experimental-dump-help`, swift-argument-parser's JSON form of
--help), so the reference never drifts from the binary.

    python3 packaging/configuration-doc.py [path/to/uturnd]   (default .build/debug/uturnd)

Rewrites the text between <!-- options:begin --> and <!-- options:end -->.
"""
import json
import re
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
DOC = ROOT / "docs" / "configuration.md"
BEGIN, END = "<!-- options:begin -->", "<!-- options:end -->"
COMMAND_LINE_ONLY = {"config", "check-config", "help", "version"}


def cell(text: str) -> str:
    return text.replace("|", "\\|").replace("<", "&lt;").replace("\n", " ")


def main() -> None:
    binary = sys.argv[1] if len(sys.argv) > 1 else str(ROOT / ".build/debug/uturnd")
    dump = json.loads(subprocess.run([binary, "--experimental-dump-help"], check=True,
                                     capture_output=True, text=True).stdout)
    sections: dict[str, list[dict]] = {}
    for arg in dump["command"]["arguments"]:
        if not arg.get("shouldDisplay", True):
            continue
        sections.setdefault(arg.get("sectionTitle", "Command line only"), []).append(arg)

    out = [f"_Generated from `uturnd --experimental-dump-help` by `packaging/configuration-doc.py`; "
           f"do not edit by hand._", ""]
    # The unsectioned (command-line only) options last.
    ordered = sorted(sections.items(), key=lambda item: item[0] == "Command line only")
    for title, args in ordered:
        out += [f"### {title}", "", "| option | config file | default | meaning |", "|---|---|---|---|"]
        for a in args:
            names = a["names"]
            long = next((n["name"] for n in names if n["kind"] == "long"), None)
            short = [n["name"] for n in names if n["kind"] == "short"]
            flag = f"`--{long}`" if long else f"`-{short[0]}`"
            if a["kind"] == "option":
                flag = flag[:-1] + f" <{a.get('valueName', 'value')}>`"
            if short and long:
                flag += f" (`-{short[0]}`)"
            abstract = a.get("abstract", "")
            default = a.get("defaultValue")
            if default is None:
                m = re.search(r"\(default: ([^)]*)\)", abstract)
                default = m.group(1) if m else ("off" if a["kind"] == "flag" else "none")
            elif default == "":
                default = "(empty)"
            if a["kind"] == "flag" and default == "false":
                default = "off"
            if a.get("isRepeating") and a["kind"] == "option" and "Repeatable" not in abstract:
                abstract += " Repeatable."
            file_name = "command line only" if long in COMMAND_LINE_ONLY else (
                f"`{long}`" if a["kind"] == "flag" else f"`{long}=…`")
            out.append(f"| {flag} | {file_name} | {cell(str(default))} | {cell(abstract)} |")
        out.append("")
    text = DOC.read_text()
    start, end = text.index(BEGIN) + len(BEGIN), text.index(END)
    DOC.write_text(text[:start] + "\n" + "\n".join(out) + text[end:])
    print(f"{DOC.relative_to(ROOT)}: {sum(len(v) for v in sections.values())} options")


if __name__ == "__main__":
    main()
