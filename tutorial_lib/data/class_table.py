"""Class tables: the classes of any segmentation data set, and how its masks encode them.

``ClassTable`` describes the classes of any segmentation data set (names, mask colours,
optional loss weights, one void value); ``load_class_table`` reads one from a
``classes.json`` or ``classes.csv`` file (format below and in ``data/README.md``).
``CAMVID_TABLE`` and ``CAMVID32_TABLE`` are CamVid's two labelings (``classes.py``) as tables.

Class table files
-----------------
``classes.json``: an object with a ``classes`` list (class index = position in the list)
and an optional ``void`` object::

    {
      "classes": [
        {"name": "Sky", "color": [128, 128, 128], "weight": 0.2595},
        {"name": "Building", "color": "#800000", "weight": 0.1826}
      ],
      "void": {"value": 11, "color": [0, 0, 0]}
    }

- ``name`` (required, unique); ``color``: ``[R, G, B]`` or ``"#RRGGBB"``, or a list of
  those when several mask colours mean the same class; give every class a colour or none
  (colours are needed only for colour masks; drawings then use a default palette);
  ``weight``: a number >= 0 for the loss, on every class or on none.
- ``void`` (optional): ``value`` is the pixel value meaning "ignore this pixel" in index
  and palette masks (it must not be a class index, e.g. 11 for CamVid or 255 for VOC);
  ``color`` (one colour or a list) is the same for colour masks. Without ``void`` every
  mask pixel must be a class.

``classes.csv``: a header line, then one row per class in index order; columns ``name``
(required), ``r,g,b`` (optional, together), ``weight`` (optional) and ``value`` (optional,
only on the void row). The row named ``void`` (any case) is the void entry, not a class.
Rows repeating a name add another colour to that class::

    name,r,g,b,weight,value
    Sky,128,128,128,0.2595,
    Building,128,0,0,0.1826,
    void,0,0,0,,11
"""

from __future__ import annotations

import csv
import json
import math
import os
from dataclasses import dataclass
from pathlib import Path

from .classes import (
    CAMVID32_LABEL_COLORS,
    CAMVID32_TO_CAMVID11,
    CAMVID_CLASSES,
    CAMVID_COLORS,
    IGNORE_INDEX,
    NUM_CLASSES,
    SEGNET_CLASS_WEIGHTS,
    VOID_COLOR,
    VOID_LABEL,
    Color,
)


class ClassTableError(ValueError):
    """A class table (or its file) is malformed. The message names the file, the entry and the fix."""


def default_palette(n: int) -> tuple[Color, ...]:
    """``n`` distinct display colours (the PASCAL VOC bit-interleaved colour map, from index 1 on)."""
    colors = []
    for i in range(1, n + 1):
        r = g = b = 0
        c = i
        for bit in range(8):
            r |= ((c >> 0) & 1) << (7 - bit)
            g |= ((c >> 1) & 1) << (7 - bit)
            b |= ((c >> 2) & 1) << (7 - bit)
            c >>= 3
        colors.append((r, g, b))
    return tuple(colors)


@dataclass(frozen=True)
class ClassTable:
    """The classes of a segmentation data set and how masks encode them.

    names: class names; class ``i`` is value ``i`` in index masks and index ``i`` in every
        label this package returns.
    colors: per class, the mask colours (RGB) meaning that class in colour masks (first one
        = display colour); ``()`` for a table without colours.
    weights: per-class loss weights, or None.
    void_value: the value meaning "ignore" in index/palette masks (not a class index), or None.
    void_colors: the colours meaning "ignore" in colour masks.
    source: where the table came from (a file name, "CamVid"), used in messages.

    Every label decoded with a table has classes ``0..num_classes-1`` and void = ``IGNORE_INDEX``.
    """

    names: tuple[str, ...]
    colors: tuple[tuple[Color, ...], ...] = ()
    weights: tuple[float, ...] | None = None
    void_value: int | None = None
    void_colors: tuple[Color, ...] = ()
    source: str = "class table"

    def __post_init__(self):
        def fail(message: str):
            raise ClassTableError(f"{self.source}: {message}")

        names = tuple(self.names)
        object.__setattr__(self, "names", names)
        if not 1 <= len(names) <= IGNORE_INDEX:
            fail(f"needs 1 to {IGNORE_INDEX} classes, got {len(names)}")
        for i, name in enumerate(names):
            if not isinstance(name, str) or not name.strip():
                fail(f"class {i} has no name; give every class a non-empty \"name\"")
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            fail(f"class names must be unique; repeated: {', '.join(duplicates)}")

        colors = tuple(tuple(tuple(int(v) for v in c) for c in cs) for cs in self.colors)
        object.__setattr__(self, "colors", colors)
        if colors:
            if len(colors) != len(names):
                fail(f"{len(colors)} colour entries for {len(names)} classes")
            missing = [names[i] for i, cs in enumerate(colors) if not cs]
            if missing:
                fail(f"class {missing[0]!r} has no colour; give every class a colour or none")
        void_colors = tuple(tuple(int(v) for v in c) for c in self.void_colors)
        object.__setattr__(self, "void_colors", void_colors)
        owner: dict[Color, str] = {}
        for name, cs in [*zip(names, colors), ("void", void_colors)]:
            for color in cs:
                if len(color) != 3 or not all(0 <= v <= 255 for v in color):
                    fail(f"colour {color} of {name!r} is not three values 0..255")
                if color in owner and owner[color] != name:
                    fail(f"colour {color} is given to both {owner[color]!r} and {name!r}")
                owner[color] = name

        if self.weights is not None:
            weights = tuple(float(w) for w in self.weights)
            object.__setattr__(self, "weights", weights)
            if len(weights) != len(names):
                fail(f"{len(weights)} weights for {len(names)} classes; give every class a weight or none")
            bad = [n for n, w in zip(names, weights) if not (math.isfinite(w) and w >= 0)]
            if bad:
                fail(f"the weight of {bad[0]!r} must be a finite number >= 0")
        if self.void_value is not None:
            if isinstance(self.void_value, bool) or int(self.void_value) != self.void_value:
                fail(f"void value {self.void_value!r} must be an integer")
            object.__setattr__(self, "void_value", int(self.void_value))
            if not len(names) <= self.void_value <= 65535:
                fail(
                    f"void value {self.void_value} must not be a class index (0..{len(names) - 1}) "
                    "and at most 65535; use a value no class has, e.g. 255"
                )

    @property
    def num_classes(self) -> int:
        return len(self.names)

    @property
    def has_colors(self) -> bool:
        return bool(self.colors)

    @property
    def palette(self) -> tuple[Color, ...]:
        """One display colour per class: the first mask colour, or the default palette."""
        return tuple(cs[0] for cs in self.colors) if self.colors else default_palette(self.num_classes)

    @property
    def color_to_index(self) -> dict[Color, int]:
        """Every mask colour -> class index; void colours -> ``IGNORE_INDEX``."""
        table = {color: i for i, cs in enumerate(self.colors) for color in cs}
        table.update({color: IGNORE_INDEX for color in self.void_colors})
        return table

    def describe(self) -> str:
        """One line: '11 classes (Sky, Building, ...), void 11 / (0, 0, 0)'."""
        shown = ", ".join(self.names[:6]) + (", ..." if self.num_classes > 6 else "")
        void = [str(self.void_value)] if self.void_value is not None else []
        void += [str(c) for c in self.void_colors]
        return f"{self.num_classes} classes ({shown}), void {' / '.join(void) if void else 'none'}"

    def to_json(self) -> str:
        """The table in the ``classes.json`` format (``load_class_table`` reads it back)."""
        classes = []
        for i, name in enumerate(self.names):
            entry: dict = {"name": name}
            if self.colors:
                cs = [list(c) for c in self.colors[i]]
                entry["color"] = cs[0] if len(cs) == 1 else cs
            if self.weights is not None:
                entry["weight"] = self.weights[i]
            classes.append(entry)
        data: dict = {"classes": classes}
        void: dict = {}
        if self.void_value is not None:
            void["value"] = self.void_value
        if self.void_colors:
            cs = [list(c) for c in self.void_colors]
            void["color"] = cs[0] if len(cs) == 1 else cs
        if void:
            data["void"] = void
        lines = ",\n".join(f"    {json.dumps(entry)}" for entry in classes)
        text = '{\n  "classes": [\n' + lines + "\n  ]"
        if void:
            text += ',\n  "void": ' + json.dumps(void)
        return text + "\n}\n"


def _parse_color(value, where: str) -> Color:
    """[R, G, B] or "#RRGGBB" -> (R, G, B); ClassTableError naming ``where`` otherwise."""
    if isinstance(value, str):
        text = value.strip()
        if len(text) == 7 and text.startswith("#"):
            try:
                return (int(text[1:3], 16), int(text[3:5], 16), int(text[5:7], 16))
            except ValueError:
                pass
    elif isinstance(value, (list, tuple)) and len(value) == 3:
        if all(isinstance(v, int) and not isinstance(v, bool) and 0 <= v <= 255 for v in value):
            return tuple(value)
    raise ClassTableError(f"{where}: colour {value!r} is not [R, G, B] with values 0..255 or \"#RRGGBB\"")


def _parse_colors(value, where: str) -> tuple[Color, ...]:
    """One colour, or a list of colours -> tuple of colours."""
    if isinstance(value, (list, tuple)) and value and all(isinstance(v, (list, tuple, str)) for v in value):
        return tuple(_parse_color(v, where) for v in value)
    return (_parse_color(value, where),)


def _number(value, where: str, kind=float):
    if isinstance(value, bool) or not isinstance(value, (int, float)) or (kind is int and value != int(value)):
        raise ClassTableError(f"{where}: expected {'an integer' if kind is int else 'a number'}, got {value!r}")
    return kind(value)


def _check_keys(entry: dict, allowed: set[str], where: str) -> None:
    unknown = sorted(set(entry) - allowed)
    if unknown:
        hint = " (spell it \"color\")" if "colour" in unknown else ""
        raise ClassTableError(
            f"{where}: unknown key {unknown[0]!r}{hint}; allowed keys: {', '.join(sorted(allowed))}"
        )


def _table_from_json(path: Path) -> ClassTable:
    source = str(path)
    try:
        data = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as err:
        raise ClassTableError(f"{source}: not valid JSON (line {err.lineno}, column {err.colno}: {err.msg})") from None
    if not isinstance(data, dict) or not isinstance(data.get("classes"), list):
        raise ClassTableError(
            f"{source}: expected an object with a \"classes\" list, e.g. "
            '{"classes": [{"name": "background", "color": [0, 0, 0]}, ...], "void": {"value": 255}}'
        )
    _check_keys(data, {"classes", "void"}, source)
    names, colors, weights = [], [], []
    for i, entry in enumerate(data["classes"]):
        where = f"{source}, classes[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("name"), str):
            raise ClassTableError(f"{where}: expected an object with a \"name\" string, got {entry!r}")
        _check_keys(entry, {"name", "color", "weight"}, where)
        names.append(entry["name"])
        colors.append(_parse_colors(entry["color"], where) if "color" in entry else ())
        weights.append(_number(entry["weight"], f"{where}, weight") if "weight" in entry else None)
    void_value, void_colors = None, ()
    if "void" in data:
        void = data["void"]
        if not isinstance(void, dict) or not void:
            raise ClassTableError(f"{source}, void: expected an object like {{\"value\": 255, \"color\": [0, 0, 0]}}")
        _check_keys(void, {"value", "color"}, f"{source}, void")
        if "value" in void:
            void_value = _number(void["value"], f"{source}, void.value", int)
        if "color" in void:
            void_colors = _parse_colors(void["color"], f"{source}, void.color")
    return _make_table(names, colors, weights, void_value, void_colors, source)


def _make_table(names, colors, weights, void_value, void_colors, source) -> ClassTable:
    """Check the all-or-none rules for colours and weights, then build the table."""
    has_color = [bool(c) for c in colors]
    if any(has_color) and not all(has_color):
        raise ClassTableError(
            f"{source}: class {names[has_color.index(False)]!r} has no colour; give every class a colour or none"
        )
    has_weight = [w is not None for w in weights]
    if any(has_weight) and not all(has_weight):
        raise ClassTableError(
            f"{source}: class {names[has_weight.index(False)]!r} has no weight; give every class a weight or none"
        )
    return ClassTable(
        names=tuple(names),
        colors=tuple(colors) if any(has_color) else (),
        weights=tuple(weights) if any(has_weight) else None,
        void_value=void_value,
        void_colors=tuple(void_colors),
        source=source,
    )


def _table_from_csv(path: Path) -> ClassTable:
    source = str(path)
    with open(path, newline="", encoding="utf-8-sig") as file:
        reader = csv.DictReader(file)
        columns = [c.strip() for c in (reader.fieldnames or [])]
        if "name" not in columns:
            raise ClassTableError(
                f"{source}: the first line must be a header with a \"name\" column, e.g. name,r,g,b,weight"
            )
        _check_keys(dict.fromkeys(columns), {"name", "r", "g", "b", "weight", "value"}, source)
        if 0 < len({"r", "g", "b"} & set(columns)) < 3:
            raise ClassTableError(f"{source}: colour columns must be r, g and b together")
        names: list[str] = []
        colors: list[list[Color]] = []
        weights: list[float | None] = []
        void_value, void_colors = None, []
        for line_no, raw in enumerate(reader, start=2):
            row = {k.strip(): (v or "").strip() for k, v in raw.items() if k is not None}
            where = f"{source}, line {line_no}"
            name = row.get("name", "")
            if not name:
                if not any(row.values()):
                    continue  # blank line
                raise ClassTableError(f"{where}: the row has no name")
            color = None
            if row.get("r") or row.get("g") or row.get("b"):
                try:
                    color = _parse_color([int(row["r"]), int(row["g"]), int(row["b"])], where)
                except (ValueError, KeyError):
                    raise ClassTableError(f"{where}: r, g, b must be integers 0..255") from None
            weight = None
            if row.get("weight"):
                try:
                    weight = float(row["weight"])
                except ValueError:
                    raise ClassTableError(f"{where}: weight {row['weight']!r} is not a number") from None
            if name.lower() == "void":
                if row.get("value"):
                    try:
                        void_value = int(row["value"])
                    except ValueError:
                        raise ClassTableError(f"{where}: value {row['value']!r} is not an integer") from None
                if color is not None:
                    void_colors.append(color)
                continue
            if row.get("value"):
                raise ClassTableError(
                    f"{where}: only the void row may have a value (a class's value is its position, "
                    f"{len(names) if name not in names else names.index(name)})"
                )
            if name in names:  # another colour for the same class
                i = names.index(name)
                if weight is not None and weights[i] is not None and weight != weights[i]:
                    raise ClassTableError(f"{where}: class {name!r} has two different weights")
                weights[i] = weights[i] if weight is None else weight
                if color is not None:
                    colors[i].append(color)
                continue
            names.append(name)
            colors.append([color] if color is not None else [])
            weights.append(weight)
    if not names:
        raise ClassTableError(f"{source}: no classes (one row per class after the header)")
    return _make_table(names, [tuple(c) for c in colors], weights, void_value, void_colors, source)


def load_class_table(path: str | os.PathLike) -> ClassTable:
    """Read a ``classes.json`` or ``classes.csv`` file (format: module docstring); ClassTableError if malformed."""
    path = Path(path)
    if not path.is_file():
        raise ClassTableError(f"class table {path} not found; write classes.json or classes.csv (see data/README.md)")
    if path.suffix.lower() == ".json":
        return _table_from_json(path)
    if path.suffix.lower() == ".csv":
        return _table_from_csv(path)
    raise ClassTableError(f"class table {path}: unknown format {path.suffix!r}; use a .json or .csv file")


#: CamVid's SegNet 11-class labeling: index labels with void 11, colour labels in SegNet's palette.
CAMVID_TABLE = ClassTable(
    names=CAMVID_CLASSES,
    colors=tuple((c,) for c in CAMVID_COLORS),
    weights=SEGNET_CLASS_WEIGHTS,
    void_value=VOID_LABEL,
    void_colors=(VOID_COLOR,),
    source="CamVid (SegNet 11 classes)",
)

#: The 32-class release's colour labels, grouped onto SegNet's 11 classes ("Void" -> ignore).
CAMVID32_TABLE = ClassTable(
    names=CAMVID_CLASSES,
    colors=tuple(
        tuple(color for name, color in CAMVID32_LABEL_COLORS if CAMVID32_TO_CAMVID11[name] == i)
        for i in range(NUM_CLASSES)
    ),
    weights=SEGNET_CLASS_WEIGHTS,
    void_colors=tuple(color for name, color in CAMVID32_LABEL_COLORS if CAMVID32_TO_CAMVID11[name] == IGNORE_INDEX),
    source="CamVid (32-class colour labels grouped into 11)",
)
