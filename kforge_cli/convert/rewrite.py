"""Rewriting a legacy-layout job file as the current layout, as text.

``convert_text`` edits the text rather than going through a TOML serializer, so
everything outside the moved table keeps its exact bytes.  The legacy keys keep
their value text and trailing comments; only the key name changes, and a comment
block directly above a key travels with it.  Where things are comes from the one
TOML scanner (``config.toml_source``); values come from tomllib.  The result is
re-parsed and compared with the expected data before it is returned, so a
conversion either round-trips exactly or is refused.
"""

from __future__ import annotations

import copy
import json
import re
import sys
from dataclasses import field
from typing import Any, NamedTuple

from kforge_cli.records import record

if sys.version_info >= (3, 11):
    import tomllib
else:  # pragma: no cover - exercised on Python 3.10 only
    import tomli as tomllib

from kforge_cli.config.toml_source import InlinePair, KeyPart, Statement, TomlScanner
from kforge_cli.convert.layout import LEGACY_TABLE, TARGET_SECTIONS, legacy_target


class Move(NamedTuple):
    old_key: str
    new_key: str
    line: int


class Conflict(NamedTuple):
    legacy_key: str
    current_key: str
    legacy_value: Any
    current_value: Any
    line: int


@record(frozen=True)
class ConversionResult:
    text: str
    changed: bool
    moves: list[Move] = field(default_factory=list)


class ConversionError(Exception):
    """The file cannot be converted automatically; nothing should be written."""

    def __init__(self, message: str) -> None:
        super().__init__(message)
        self.message = message


class ConversionConflict(ConversionError):
    """The legacy table and a current-layout section set one field differently."""

    def __init__(self, message: str, conflicts: list[Conflict]) -> None:
        super().__init__(message)
        self.conflicts = conflicts


class TomlSyntaxError(ConversionError):
    """The input is not valid TOML."""

    def __init__(self, message: str, line: int | None, column: int | None) -> None:
        super().__init__(message)
        self.line = line
        self.column = column


def parse_toml(text: str) -> dict[str, Any]:
    try:
        return tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        reason = str(exc)
        found = re.search(r"\s*\(at line (\d+), column (\d+)\)", reason)
        if found is None:
            raise TomlSyntaxError(f"not valid TOML: {reason}", None, None) from None
        line, column = int(found[1]), int(found[2])
        reason = reason[: found.start()] + reason[found.end():]
        raise TomlSyntaxError(
            f"not valid TOML at line {line}, column {column}: {reason}", line, column
        ) from None


def _legacy_value(data: dict[str, Any]) -> Any:
    model = data.get("model")
    if isinstance(model, dict):
        return model.get("vlm")
    return None


def _may_mention_vlm(text: str) -> bool:
    # Cheap exit for the vast majority of files; a backslash could spell the
    # key with a unicode escape, so only then is a full parse needed.
    return "vlm" in text or "\\" in text


def needs_conversion(text: str) -> bool:
    """True when the file still uses the legacy ``[model.vlm]`` layout."""
    if not _may_mention_vlm(text):
        return False
    return _legacy_value(parse_toml(text)) is not None


def convert_text(text: str) -> ConversionResult:
    """Rewrite the legacy layout into the current one (see module docstring).

    Raises ``TomlSyntaxError`` for invalid TOML, ``ConversionConflict`` when a
    current-layout section already sets a moved field to another value, and
    ``ConversionError`` for legacy shapes that cannot be moved faithfully.
    """
    if not _may_mention_vlm(text):
        return ConversionResult(text, False, [])
    data = parse_toml(text)
    legacy = _legacy_value(data)
    if legacy is None:
        return ConversionResult(text, False, [])
    if isinstance(legacy, list):
        raise ConversionError(
            "model.vlm is an array of tables, which the legacy layout never accepted; "
            "fix it by hand"
        )
    if not isinstance(legacy, dict):
        raise ConversionError(f"model.vlm is not a table (it is {_render(legacy)}); fix it by hand")
    return _Converter(text, data, legacy).run()


# --------------------------------------------------------------------------
# Grouping a table body into movable chunks.


@record
class _Chunk:
    """An entry with the comments that belong to it and the blank lines before them."""

    entry: int
    prefix: list[int]  # blank and comment lines above the entry
    suffix: list[int]  # comment lines directly below it (not above anything else)

    @property
    def indices(self) -> list[int]:
        return [*self.prefix, self.entry, *self.suffix]


@record
class _Body:
    header_comments: list[int]  # a comment block right under the header, detached from keys
    chunks: list[_Chunk]
    tail: list[int]  # trailing blank lines and comments that stay where they are


def _group_body(elements: list[Statement], indices: list[int], ends_at_header: bool) -> _Body:
    """Attach comment blocks to keys.

    A block directly above a key belongs to that key.  At the end of the body,
    a block directly above the next table header stays with that header.  A
    block directly below a key (and above a blank line) belongs to the key
    above.  A block directly below the table header and separated from the
    first key is about the table.  Any other block goes with the next key,
    keeping the blank lines in between.
    """
    blocks: list[tuple[str, list[int]]] = []
    for index in indices:
        kind = elements[index].kind
        if blocks and kind != "entry" and blocks[-1][0] == kind:
            blocks[-1][1].append(index)
        else:
            blocks.append((kind, [index]))
    body = _Body([], [], [])
    pending: list[int] = []
    for position, (kind, members) in enumerate(blocks):
        if kind == "entry":
            body.chunks.append(_Chunk(members[0], pending, []))
            pending = []
        elif kind == "blank":
            pending.extend(members)
        else:
            before = blocks[position - 1][0] if position > 0 else None
            after = blocks[position + 1][0] if position + 1 < len(blocks) else None
            if after == "entry" or (after is None and ends_at_header):
                pending.extend(members)
            elif before == "entry":
                body.chunks[-1].suffix.extend(members)
            elif before is None:
                body.header_comments.extend(members)
            else:
                pending.extend(members)
    body.tail = pending
    return body


# --------------------------------------------------------------------------
# Values: strict comparison and short rendering for messages.


def _same_value(a: Any, b: Any) -> bool:
    if type(a) is not type(b):
        return False
    if isinstance(a, dict):
        return a.keys() == b.keys() and all(_same_value(a[k], b[k]) for k in a)
    if isinstance(a, list):
        return len(a) == len(b) and all(_same_value(x, y) for x, y in zip(a, b))
    return a == b


def _render(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, str):
        return json.dumps(value, ensure_ascii=False)
    if isinstance(value, list):
        return "[" + ", ".join(_render(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k} = {_render(v)}" for k, v in value.items()) + "}"
    return str(value)


def _dotted(path: tuple[str, ...]) -> str:
    return ".".join(path)


# --------------------------------------------------------------------------


@record
class _Unit:
    """Text moving into one target section."""

    leading_blank: str  # dropped when the unit opens its section
    text: str


_Region = tuple  # (header element index or None for the root table, body element indices)


class _Converter:
    """One conversion: locate the legacy pieces, decide where each field goes,
    then record edits (removed, replaced, inserted elements) and apply them."""

    def __init__(self, text: str, data: dict[str, Any], legacy: dict[str, Any]) -> None:
        self.text = text
        self.data = data
        self.legacy = legacy
        self.newline = "\r\n" if "\r\n" in text else "\n"
        self.scanner = TomlScanner(text)
        self.elements = list(self.scanner.statements())
        self.regions = self._regions()
        self.removed: set[int] = set()
        self.replaced: dict[int, str] = {}
        # Text inserted before element i (i == len(elements): at the end), with
        # a flag asking for blank lines around it: set for blocks added between
        # existing content rather than in place of the legacy table.
        self.inserted: dict[int, list[tuple[str, bool]]] = {}
        self.units: dict[str, list[_Unit]] = {section: [] for section in TARGET_SECTIONS}
        self.vlm_notes: list[str] = []  # comment lines about the legacy table as a whole
        self.vlm_header_comment = ""  # trailing comment of the legacy table, for [vlm]
        self.dropped: set[str] = set()  # fields the current layout already holds, same value

    def run(self) -> ConversionResult:
        main, subtables, hosts = self._locate()
        first_line, inline_pairs = self._legacy_fields(main, subtables, hosts)
        forms = {section: self._section_form(section) for section in TARGET_SECTIONS}
        moves = self._decide(first_line, forms)

        block_at: int | None = None
        block_between = False
        if main is not None:
            block_at = self._take_table(main)
        for host in hosts:
            at = self._take_from_host(host, inline_pairs)
            if block_at is None:
                block_at, block_between = at, True
        for subtable in subtables:
            self._move_subtable(subtable)
        has_legacy_table = main is not None or bool(hosts)
        self._join_existing_sections(forms)
        self._add_new_sections(forms, block_at, block_between, has_legacy_table)

        converted = self._assemble()
        self._verify(converted, first_line, has_legacy_table)
        return ConversionResult(converted, converted != self.text, moves)

    # -- structure ---------------------------------------------------------

    def _regions(self) -> list[_Region]:
        regions: list[_Region] = [(None, [])]
        for index, element in enumerate(self.elements):
            if element.kind == "header":
                regions.append((index, []))
            else:
                regions[-1][1].append(index)
        return regions

    def _body(self, region: _Region) -> _Body:
        followed_by_header = region[0] != self.regions[-1][0]
        return _group_body(self.elements, region[1], followed_by_header)

    def _end_of_keys(self, region: _Region, body: _Body) -> int:
        """Where keys appended to a region go: before its trailing blank lines
        and comments, else before the next header."""
        if body.tail:
            return body.tail[0]
        header, indices = region
        if indices:
            return indices[-1] + 1
        return 0 if header is None else header + 1

    def _source(self, index: int) -> str:
        element = self.elements[index]
        return self.text[element.start:element.end]

    def _with_newline(self, chunk: str) -> str:
        return chunk if chunk.endswith("\n") else chunk + self.newline

    def _section_form(self, section: str) -> str:
        """How the current layout writes ``section``: "header" ([section]),
        "inline" (section = {...}), "dotted" (section.key = ...), "implicit"
        (only through sub-tables such as [section.sub]) or "absent"."""
        for element in self.elements:
            if element.kind == "header" and element.names == (section,) and not element.is_array:
                return "header"
        for element in self.elements:
            if element.kind == "entry" and element.table == () and element.names[0] == section:
                return "inline" if len(element.names) == 1 else "dotted"
        return "implicit" if section in self.data else "absent"

    def _line_of(self, path: tuple[str, ...]) -> int | None:
        for element in self.elements:
            if element.kind not in ("header", "entry"):
                continue
            full = element.full_path
            if full[: len(path)] == path or (element.kind == "entry" and path[: len(full)] == full):
                return element.line
        return None

    # -- analysis --------------------------------------------------------------

    def _locate(self) -> tuple[_Region | None, list[_Region], list[tuple[_Region, list[int]]]]:
        """The [model.vlm] table, its [model.vlm.*] sub-tables, and the tables
        ([model] or the root) holding `vlm.*` / `vlm = {...}` entries."""
        main: _Region | None = None
        subtables: list[_Region] = []
        hosts: list[tuple[_Region, list[int]]] = []
        for region in self.regions:
            header, body = region
            path = self.elements[header].names if header is not None else ()
            if path[:2] == LEGACY_TABLE:
                if len(path) == 2:
                    main = region
                else:
                    subtables.append(region)
                continue
            entries = [i for i in body if self.elements[i].kind == "entry"
                       and self.elements[i].full_path[:2] == LEGACY_TABLE]
            if entries:
                hosts.append((region, entries))
        if main is None and not subtables and not hosts:
            raise ConversionError(
                "model.vlm is written inside an inline [model] table; "
                "move it to a [model.vlm] table by hand, then rerun kforge convert"
            )
        return main, subtables, hosts

    def _legacy_fields(
        self, main: _Region | None, subtables: list[_Region], hosts: list[tuple[_Region, list[int]]],
    ) -> tuple[dict[str, int], dict[int, list[InlinePair]]]:
        """Each legacy field with the line it is first written on, and the
        parsed pairs of every `vlm = {...}` entry."""
        found: list[tuple[int, str]] = []
        inline_pairs: dict[int, list[InlinePair]] = {}
        if main is not None:
            found += [(self.elements[i].line, self.elements[i].names[0])
                      for i in main[1] if self.elements[i].kind == "entry"]
        for _, entries in hosts:
            for i in entries:
                element = self.elements[i]
                if len(element.full_path) > 2:
                    found.append((element.line, element.full_path[2]))
                    continue
                if self.text[element.value_start] != "{":
                    raise ConversionError(
                        f"line {element.line}: model.vlm is not a table; fix it by hand"
                    )
                inline_pairs[i] = self.scanner.inline_pairs(element.value_start)
                found += [(element.line, pair.keys[0].name) for pair in inline_pairs[i]]
        for header, _ in subtables:
            found.append((self.elements[header].line, self.elements[header].names[2]))
        first_line: dict[str, int] = {}
        for line, name in sorted(found, key=lambda item: item[0]):
            first_line.setdefault(name, line)
        return first_line, inline_pairs

    def _decide(self, first_line: dict[str, int], forms: dict[str, str]) -> list[Move]:
        """Move, merge (same value already in the current layout) or refuse."""
        for section in TARGET_SECTIONS:
            if section in self.data and not isinstance(self.data[section], dict):
                raise ConversionError(
                    f"line {self._line_of((section,))}: {section} is not a table; fix it by hand"
                )
        moves: list[Move] = []
        conflicts: list[Conflict] = []
        for name, line in first_line.items():
            section, target = legacy_target(name)
            legacy_key = _dotted((*LEGACY_TABLE, name))
            current_key = f"{section}.{target}"
            moves.append(Move(legacy_key, current_key, line))
            current = self.data.get(section)
            if isinstance(current, dict) and target in current:
                if _same_value(self.legacy[name], current[target]):
                    self.dropped.add(name)
                else:
                    conflicts.append(Conflict(
                        legacy_key, current_key, self.legacy[name], current[target], line,
                    ))
            elif forms[section] in ("inline", "dotted"):
                shape = "an inline table" if forms[section] == "inline" else "dotted keys"
                raise ConversionError(
                    f"line {line}: {legacy_key} would move into [{section}], which is written "
                    f"as {shape} (line {self._line_of((section,))}); turn it into a "
                    f"[{section}] table by hand, then rerun kforge convert"
                )
        if conflicts:
            raise ConversionConflict(self._conflict_message(conflicts), conflicts)
        return moves

    # -- edits -----------------------------------------------------------------

    def _take_table(self, region: _Region) -> int:
        """Move every key of [model.vlm]; returns where the new sections go."""
        header, _ = region
        head = self.elements[header]
        if head.comment_start >= 0:
            self.vlm_header_comment = self.text[head.syntax_end:head.end].rstrip("\r\n")
        body = self._body(region)
        self.vlm_notes.extend(self._source(i) for i in body.header_comments)
        for chunk in body.chunks:
            self._add_chunk(chunk, self.elements[chunk.entry].keys[0])
        self.removed.add(header)
        self.removed.update(body.header_comments)
        for chunk in body.chunks:
            self.removed.update(chunk.indices)
        return self._end_of_keys(region, body)

    def _take_from_host(
        self, host: tuple[_Region, list[int]], inline_pairs: dict[int, list[InlinePair]],
    ) -> int:
        """Move the `vlm.*` / `vlm = {...}` entries out of [model] or the root
        table; returns where the new sections go (right after that table's keys)."""
        region, entries = host
        body = self._body(region)
        legacy_chunks = [chunk for chunk in body.chunks if chunk.entry in entries]
        for chunk in legacy_chunks:
            element = self.elements[chunk.entry]
            if chunk.entry in inline_pairs:
                self._add_inline(chunk, inline_pairs[chunk.entry])
            else:
                # The field is the key part after "vlm" ([model]) or "model.vlm" (root).
                self._add_chunk(chunk, element.keys[len(LEGACY_TABLE) - len(element.table)])
        self._remove_from_host(body, legacy_chunks)
        return self._end_of_keys(region, body)

    def _comment_line(self, element: Statement) -> str:
        """The trailing comment of ``element`` as a line of its own."""
        indent = self.text[element.start:element.key_start]
        comment = self.text[element.comment_start:element.end].rstrip("\r\n")
        return indent + comment + self.newline

    def _renamed_key(self, field_part: KeyPart, end: int) -> str:
        """The key text from ``field_part`` to ``end``, with the field renamed."""
        _, target = legacy_target(field_part.name)
        head = target if target != field_part.name else self.text[field_part.start:field_part.end]
        return head + self.text[field_part.end:end]

    def _split_prefix(self, prefix: list[int]) -> tuple[str, str]:
        """Leading blank lines of a chunk, and the rest of its prefix."""
        cut = self._leading_blank_count(prefix)
        blank = "".join(self._source(i) for i in prefix[:cut])
        rest = "".join(self._source(i) for i in prefix[cut:])
        return blank, rest

    def _add_chunk(self, chunk: _Chunk, field_part: KeyPart) -> None:
        element = self.elements[chunk.entry]
        section, _ = legacy_target(field_part.name)
        blank, prefix = self._split_prefix(chunk.prefix)
        suffix = "".join(self._with_newline(self._source(i)) for i in chunk.suffix)
        if field_part.name in self.dropped:
            # The current layout already holds this value: drop the key, keep its comments.
            own = self._comment_line(element) if element.comment_start >= 0 else ""
            kept = prefix + own + suffix
            if kept.strip():
                self.units[section].append(_Unit(blank, self._with_newline(kept)))
            return
        line = (self.text[element.start:element.key_start]
                + self._renamed_key(field_part, element.end))
        self.units[section].append(_Unit(blank, prefix + self._with_newline(line) + suffix))

    def _add_inline(self, chunk: _Chunk, pairs: list[InlinePair]) -> None:
        """Split `vlm = {...}` into one line per pair; its comments describe the
        table as a whole, so they go to [vlm]."""
        element = self.elements[chunk.entry]
        _, prefix = self._split_prefix(chunk.prefix)
        if prefix:
            self.vlm_notes.append(prefix)
        if element.comment_start >= 0 and not self.vlm_header_comment:
            self.vlm_header_comment = self.text[element.value_end:element.end].rstrip("\r\n")
        elif element.comment_start >= 0:
            self.vlm_notes.append(self._comment_line(element))
        indent = self.text[element.start:element.key_start]
        for pair in pairs:
            part = pair.keys[0]
            if part.name in self.dropped:
                continue
            section, _ = legacy_target(part.name)
            line = indent + self._renamed_key(part, pair.value_end) + self.newline
            self.units[section].append(_Unit("", line))
        if chunk.suffix:
            self.vlm_notes.append(
                "".join(self._with_newline(self._source(i)) for i in chunk.suffix))

    def _join_units(self, units: list[_Unit]) -> str:
        return "".join(
            (unit.leading_blank if n else "") + self._with_newline(unit.text)
            for n, unit in enumerate(units)
        )

    def _remove_from_host(self, body: _Body, legacy_chunks: list[_Chunk]) -> None:
        """Delete legacy entries from [model] (or the root table) without leaving
        doubled blank lines behind.

        Consecutive legacy chunks form a run that goes away with the blank
        lines inside it.  The blank lines leading into a run stay only when the
        run sat between two groups of kept keys and nothing else separates them.
        """
        legacy = {chunk.entry for chunk in legacy_chunks}
        runs: list[list[int]] = []  # positions in body.chunks
        for position, chunk in enumerate(body.chunks):
            if chunk.entry not in legacy:
                continue
            if runs and runs[-1][-1] == position - 1:
                runs[-1].append(position)
            else:
                runs.append([position])
        for run in runs:
            first = body.chunks[run[0]]
            leading = self._leading_blank_count(first.prefix)
            after = run[-1] + 1
            keep_leading = (
                leading > 0
                and after < len(body.chunks)
                and self._leading_blank_count(body.chunks[after].prefix) == 0
            )
            for position in run:
                for k, index in enumerate(body.chunks[position].indices):
                    if keep_leading and position == run[0] and k < leading:
                        continue
                    self.removed.add(index)

    def _leading_blank_count(self, prefix: list[int]) -> int:
        count = 0
        while count < len(prefix) and self.elements[prefix[count]].kind == "blank":
            count += 1
        return count

    def _move_subtable(self, region: _Region) -> None:
        header, body_indices = region
        head = self.elements[header]
        field_part = head.keys[2]
        if field_part.name in self.dropped:
            # Same value already in the current layout: drop the table, keep its comments.
            self.removed.add(header)
            if head.comment_start >= 0:
                comment = self.text[head.comment_start:head.end].rstrip("\r\n")
                self.inserted.setdefault(header, []).append((comment + self.newline, False))
            for i in body_indices:
                element = self.elements[i]
                if element.kind == "entry" and element.comment_start >= 0:
                    self.replaced[i] = self._comment_line(element)
                elif element.kind == "entry":
                    self.removed.add(i)
            return
        section, _ = legacy_target(field_part.name)
        self.replaced[header] = (
            self.text[head.start:head.key_start]
            + f"{section}."
            + self._renamed_key(field_part, head.end)
        )

    def _vlm_notes_text(self, header_comment_as_line: bool) -> str:
        notes = "".join(self._with_newline(note) for note in self.vlm_notes)
        if header_comment_as_line and self.vlm_header_comment:
            notes = self.vlm_header_comment.strip() + self.newline + notes
        return notes

    def _join_existing_sections(self, forms: dict[str, str]) -> None:
        """Keys whose target is an existing [section] table are appended to it."""
        for section in TARGET_SECTIONS:
            if forms[section] != "header":
                continue
            text = self._join_units(self.units[section])
            if section == "vlm":
                text = self._vlm_notes_text(header_comment_as_line=True) + text
            if not text:
                continue
            region = next(r for r in self.regions if r[0] is not None
                          and self.elements[r[0]].names == (section,)
                          and not self.elements[r[0]].is_array)
            at = self._end_of_keys(region, self._body(region))
            self.inserted.setdefault(at, []).append((text, False))

    def _add_new_sections(
        self, forms: dict[str, str], block_at: int | None, between: bool, has_legacy_table: bool,
    ) -> None:
        """[vision_encoder], [adapter] (only with keys) and [vlm], in that order.
        [vlm] is written even when empty: its presence is what makes a VLM run."""
        sections: list[str] = []
        for section in TARGET_SECTIONS:
            form = forms[section]
            if form == "header":
                continue
            content = self._join_units(self.units[section])
            if form in ("inline", "dotted"):
                # Only comments of merged keys get here (moves into such sections
                # were refused); a [section] header would define the table twice.
                notes = self._vlm_notes_text(header_comment_as_line=True) if section == "vlm" else ""
                if notes or content:
                    sections.append(notes + content)
                continue
            if not (self.units[section] or (section == "vlm" and has_legacy_table)):
                continue
            header_line = f"[{section}]"
            notes = ""
            if section == "vlm":
                header_line += self.vlm_header_comment
                notes = self._vlm_notes_text(header_comment_as_line=False)
            sections.append(header_line + self.newline + notes + content)
        if sections and block_at is not None:
            self.inserted.setdefault(block_at, []).append((self.newline.join(sections), between))

    # -- output ------------------------------------------------------------------

    def _assemble(self) -> str:
        out: list[str] = []
        separate_next = False

        def ends_with_blank_line() -> bool:
            joined = "".join(out[-3:])
            lines = joined.split("\n")
            return len(lines) >= 2 and lines[-1] == "" and lines[-2].strip() == ""

        def emit_inserts(index: int) -> None:
            nonlocal separate_next
            for chunk, separate in self.inserted.get(index, []):
                if out and not out[-1].endswith("\n"):
                    out.append(self.newline)
                if separate and out and not ends_with_blank_line():
                    out.append(self.newline)
                out.append(chunk)
                separate_next = separate

        for index, element in enumerate(self.elements):
            emit_inserts(index)
            if index in self.removed:
                continue
            if separate_next and element.kind != "blank":
                out.append(self.newline)
            separate_next = False
            out.append(self.replaced.get(index, self._source(index)))
        emit_inserts(len(self.elements))
        return "".join(out)

    def _verify(self, converted: str, first_line: dict[str, int], has_legacy_table: bool) -> None:
        """The converted text must hold exactly the original data, moved."""
        expected = copy.deepcopy(self.data)
        del expected["model"]["vlm"]
        for name in first_line:
            section, target = legacy_target(name)
            expected.setdefault(section, {})[target] = copy.deepcopy(self.legacy[name])
        if has_legacy_table:
            expected.setdefault("vlm", {})
        try:
            actual = parse_toml(converted)
        except TomlSyntaxError as exc:
            raise RuntimeError(f"convert produced invalid TOML ({exc.message})") from None
        for document in (expected, actual):
            if document.get("model") == {}:
                del document["model"]
        if not _same_value(expected, actual):
            raise RuntimeError("convert produced a file whose data differs from the input")

    def _conflict_message(self, conflicts: list[Conflict]) -> str:
        lines = ["the legacy [model.vlm] table and the current layout set the same field differently:"]
        for conflict in conflicts:
            section, target = conflict.current_key.split(".", 1)
            lines.append(
                f"  {conflict.legacy_key} = {_render(conflict.legacy_value)} (line {conflict.line})"
                f" vs {conflict.current_key} = {_render(conflict.current_value)}"
                f" (line {self._line_of((section, target))})"
            )
        lines.append("keep one value, delete the other key, then rerun kforge convert")
        return "\n".join(lines)
