"""A structural checker for the Alloy pipeline (no Alloy binary can be had here).

It reads the block structure of an Alloy configuration (``type "label" { ... }``), checks that
brackets and strings are balanced, that every ``component.label.export`` reference names a
component defined in the file, and returns what the label-cardinality rules need: the labels
the pipeline keeps, the labels it extracts and the structured metadata it attaches.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field


@dataclass
class AlloyPipeline:
    components: set[str] = field(default_factory=set)
    references: set[str] = field(default_factory=set)
    label_keep: list[str] = field(default_factory=list)
    labels: set[str] = field(default_factory=set)
    structured_metadata: set[str] = field(default_factory=set)
    problems: list[str] = field(default_factory=list)


def _strip_comments_and_strings(text: str) -> tuple[str, list[str]]:
    out, strings, i = [], [], 0
    while i < len(text):
        ch = text[i]
        if text.startswith("//", i):
            j = text.find("\n", i)
            i = len(text) if j < 0 else j
            continue
        if ch == '"':
            j, buf = i + 1, []
            while j < len(text) and text[j] != '"':
                if text[j] == "\\":
                    buf.append(text[j : j + 2])
                    j += 2
                    continue
                if text[j] == "\n":
                    raise ValueError(f"unterminated string at offset {i}")
                buf.append(text[j])
                j += 1
            if j >= len(text):
                raise ValueError(f"unterminated string at offset {i}")
            strings.append("".join(buf))
            out.append(f'"#{len(strings) - 1}"')
            i = j + 1
            continue
        out.append(ch)
        i += 1
    return "".join(out), strings


def parse(text: str) -> AlloyPipeline:
    result = AlloyPipeline()
    try:
        body, strings = _strip_comments_and_strings(text)
    except ValueError as exc:
        result.problems.append(str(exc))
        return result
    depth = 0
    for ch in body:
        depth += {"{": 1, "}": -1}.get(ch, 0)
        if depth < 0:
            result.problems.append("unbalanced '}'")
            return result
    if depth or body.count("[") != body.count("]"):
        result.problems.append("unbalanced brackets")
        return result
    # Top-level components: name "label" { at depth 0.
    depth = 0
    for m in re.finditer(r'([a-z_][a-z0-9_.]*)\s+"#(\d+)"\s*\{|[{}]', body):
        tok = m.group(0)
        if tok == "{":
            depth += 1
        elif tok == "}":
            depth -= 1
        else:
            if depth == 0:
                result.components.add(f"{m.group(1)}.{strings[int(m.group(2))]}")
            depth += 1
    for ref in re.findall(r"(?<![\w.\"])((?:discovery|local|loki)\.[a-z_]+\.[a-z_]+)\.[a-z_]+", body):
        result.references.add(ref)
    for missing in sorted(result.references - result.components):
        result.problems.append(f"reference to undefined component {missing}")

    def block(name: str) -> list[str]:
        return [
            m.group(1)
            for m in re.finditer(rf"{re.escape(name)}\s*\{{([^{{}}]*(?:\{{[^{{}}]*\}}[^{{}}]*)*)\}}", body)
        ]

    for content in block("stage.label_keep"):
        result.label_keep += [strings[int(i)] for i in re.findall(r'"#(\d+)"', content)]

    def keys(content: str) -> set[str]:
        values = re.search(r"values\s*=\s*\{([^{}]*)\}", content)
        return set(re.findall(r"(\w+)\s*=", values.group(1))) if values else set()

    for content in block("stage.labels"):
        result.labels |= keys(content)
    for content in block("stage.structured_metadata"):
        result.structured_metadata |= keys(content)
    for content in block("discovery.relabel"):
        for rule in re.findall(r"rule\s*\{([^{}]*)\}", content):
            target = re.search(r'target_label\s*=\s*"#(\d+)"', rule)
            if target and not strings[int(target.group(1))].startswith("__"):
                result.labels.add(strings[int(target.group(1))])
    return result
