"""The project's prose: no pointer to notes a learner cannot open, links that resolve, true numbers.

* No document or notebook may send the reader to the developers' private notes: the word "spec"
  (as in "spec 1.9", "the spec's table") and the phrase "reference notes" are not allowed in any
  Markdown document or notebook (cell sources and text outputs). Cite ``docs/reference.md`` or
  the paper instead.
* Every relative link in the Markdown documents and in the notebooks' Markdown cells points to a
  file that exists and, when it names an anchor in a Markdown file, to a heading that exists
  (GitHub's anchor rules). Notebooks link to sections of ``docs/reference.md``; the anchors they
  are told to use are pinned below, so renaming a heading fails here, not in a reader's browser.
* The parameter counts that ``docs/reference.md`` states are recounted with the library and with
  the official state_dict listing.
"""

from __future__ import annotations

import json
import math
import os
import re
from pathlib import Path
from urllib.parse import unquote

import pytest
import torch

ROOT = Path(__file__).resolve().parents[1]
REFERENCE = ROOT / "docs" / "reference.md"

#: Documents that must exist (the notebooks and the README point to them).
REQUIRED_DOCS = ("README.md", "data/README.md", "checkpoints/README.md", "docs/reference.md")

#: "spec" as a word (spec, specs, spec's; not "specific" or TORCH_SPEC) and "reference notes".
PRIVATE_NOTES = re.compile(r"\bspecs?\b|\breference notes\b", re.IGNORECASE)

#: Sections of docs/reference.md that notebooks link to: keep these anchors stable.
PINNED_ANCHORS = (
    "1-the-model-in-one-paragraph",
    "2-architecture-of-r50-vit-b_16",
    "21-configuration",
    "22-the-hybrid-cnn-resnetv2-with-stdconv2d-and-groupnorm",
    "23-embeddings-the-hybrid-1x1-patch",
    "24-transformer-encoder-12-pre-ln-layers",
    "25-decoder-decodercup-and-the-skips",
    "26-segmentation-head-and-forward-pass",
    "27-where-the-official-code-differs-from-googles-jax-model",
    "3-shapes-at-224x224",
    "4-parameters-and-flops",
    "5-weight-layout",
    "51-googles-r50vit-b_16npz",
    "52-position-embeddings",
    "53-official-checkpoints-pth",
    "6-training-and-evaluation-recipe",
    "61-synapse-training",
    "62-evaluation-protocol",
    "63-acdc",
    "7-results-reported-in-the-paper",
    "71-synapse",
    "72-acdc",
    "73-ablations",
    "8-the-blog-re-implementation",
    "81-what-the-article-builds",
    "82-its-parameters-measured",
    "83-the-blog-preset-versus-the-article",
    "9-related-work",
)


def _skip_dir(path: Path) -> bool:
    return any(part.startswith(".") or part in {"build", "dist", "node_modules"}
               for part in path.relative_to(ROOT).parts[:-1])


def markdown_files() -> list[Path]:
    """README.md, every docs/*.md and every README.md one folder down (data/, checkpoints/, ...)."""
    found = {ROOT / "README.md", *ROOT.glob("docs/*.md"), *ROOT.glob("*/README.md")}
    found |= {ROOT / p for p in REQUIRED_DOCS}
    return sorted(p for p in found if p.exists() and not _skip_dir(p))


def notebooks() -> list[Path]:
    return sorted(ROOT.glob("notebooks/*.ipynb"))


def _rel(path: Path) -> str:
    return path.relative_to(ROOT).as_posix()


# ------------------------------------------------------------------------------------------------
# Markdown helpers: code removal, GitHub anchors, links
# ------------------------------------------------------------------------------------------------
_FENCE = re.compile(r"^(```|~~~).*?^\1[^\n]*$", re.MULTILINE | re.DOTALL)
_INLINE_CODE = re.compile(r"(`+)(?:(?!\1).)+?\1", re.DOTALL)
_LINK = re.compile(r"!?\[(?:[^\[\]]|\[[^\]]*\])*\]\(\s*<?([^()\s<>]*(?:\([^()\s]*\)[^()\s<>]*)*)>?"
                   r"(?:\s+(?:\"[^\"]*\"|'[^']*'))?\s*\)")
_HEADING = re.compile(r"^ {0,3}(#{1,6})[ \t]+(.+?)[ \t#]*$", re.MULTILINE)
_HTML_ANCHOR = re.compile(r"<a\s[^>]*\b(?:id|name)\s*=\s*[\"']([^\"']+)[\"']", re.IGNORECASE)


def strip_code(markdown: str) -> str:
    """Markdown without fenced code blocks (line structure kept) and without inline code spans."""
    no_fences = _FENCE.sub(lambda m: "\n" * m.group(0).count("\n"), markdown)
    return _INLINE_CODE.sub("", no_fences)


def github_slug(heading: str) -> str:
    """GitHub's anchor for a heading: rendered text, lower case, punctuation dropped, ' ' -> '-'."""
    text = re.sub(r"!?\[([^\]]*)\]\([^)]*\)", r"\1", heading)  # a link renders as its text
    text = re.sub(r"<[^>]+>", "", text).replace("`", "").replace("*", "")
    text = re.sub(r"[^\w\- ]", "", text.strip().lower())
    return text.replace(" ", "-")


def anchors(markdown: str) -> set[str]:
    """Every anchor of a Markdown file: heading slugs (repeats get -1, -2, ...) and HTML ids."""
    seen: dict[str, int] = {}
    result = set()
    no_fences = _FENCE.sub("", markdown)
    for _, title in _HEADING.findall(no_fences):
        slug = github_slug(title)
        n = seen.get(slug, 0)
        result.add(slug if n == 0 else f"{slug}-{n}")
        seen[slug] = n + 1
    result |= set(_HTML_ANCHOR.findall(markdown))
    return result


def relative_links(markdown: str) -> list[str]:
    """Link and image targets that are not URLs (no scheme such as https: or mailto:)."""
    targets = _LINK.findall(strip_code(markdown))
    return [t for t in targets if t and not re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:", t)]


def broken_links(markdown: str, base: Path) -> list[str]:
    """Each relative link of ``markdown`` (a file in folder ``base``) that does not resolve."""
    problems = []
    for target in relative_links(markdown):
        path_part, _, fragment = target.partition("#")
        path_part = unquote(path_part)
        if path_part:
            from_root = path_part.startswith("/")
            dest = ROOT / path_part.lstrip("/") if from_root else base / path_part
        else:
            dest = None  # a link into the same document
        if dest is not None and not dest.exists():
            problems.append(f"{target}: {os.path.relpath(dest, ROOT)} does not exist")
            continue
        if fragment and (dest is None or dest.suffix == ".md"):
            text = markdown if dest is None else dest.read_text(encoding="utf-8")
            if unquote(fragment) not in anchors(text):
                problems.append(f"{target}: no heading with anchor #{fragment}")
    return problems


def test_github_slug_follows_githubs_rules():
    assert github_slug("3. Shapes at 224x224") == "3-shapes-at-224x224"
    assert github_slug("2.5 Decoder: DecoderCup and skips") == "25-decoder-decodercup-and-skips"
    assert github_slug("5.1 Google's R50+ViT-B_16.npz") == "51-googles-r50vit-b_16npz"
    assert github_slug("The `blog` preset") == "the-blog-preset"
    assert anchors("# A\n\n```\n# not a heading\n```\n## A\n") == {"a", "a-1"}


def test_link_checker_catches_broken_links(tmp_path):
    doc = ("[ok](reference.md#3-shapes-at-224x224) [gone](nope.md) "
           "[bad](reference.md#no-such-section)")
    problems = broken_links(doc, ROOT / "docs")
    assert len(problems) == 2
    assert "nope.md" in problems[0] and "#no-such-section" in problems[1]
    assert broken_links("`[code](not-a-link.md)` and [web](https://example.org/x#y)", ROOT) == []


# ------------------------------------------------------------------------------------------------
# No pointer to private notes
# ------------------------------------------------------------------------------------------------
def private_note_mentions(text: str) -> list[str]:
    """Each line of ``text`` that mentions the private notes, shortened around the match."""
    hits = []
    for line in text.splitlines():
        m = PRIVATE_NOTES.search(line)
        if m:
            start = max(m.start() - 50, 0)
            hits.append(("..." if start else "") + line[start:m.end() + 50].strip())
    return hits


def _notebook_texts(path: Path):
    """(cell index, where, text) for every cell source and every text output of a notebook."""
    nb = json.loads(path.read_text(encoding="utf-8"))
    for i, cell in enumerate(nb["cells"]):
        yield i, f"{cell['cell_type']} source", "".join(cell.get("source", ""))
        for out in cell.get("outputs", []):
            if "text" in out:
                yield i, "output", "".join(out["text"])
            for mime, data in out.get("data", {}).items():
                if mime.startswith("text/"):
                    yield i, f"output {mime}", "".join(data)


def test_required_docs_exist():
    missing = [p for p in REQUIRED_DOCS if not (ROOT / p).is_file()]
    assert not missing, f"missing documents: {missing}"


def test_private_note_check_can_fail():
    assert private_note_mentions("the shapes of spec 1.8 and the Spec's table, see reference notes")
    assert not private_note_mentions("a specific TORCH_SPEC, specified by the reference")


@pytest.mark.parametrize("path", markdown_files(), ids=_rel)
def test_markdown_does_not_point_to_private_notes(path):
    hits = private_note_mentions(path.read_text(encoding="utf-8"))
    assert not hits, (
        f"{_rel(path)} points readers to notes they cannot open; cite docs/reference.md or the "
        "paper instead:\n  " + "\n  ".join(hits)
    )


@pytest.mark.parametrize("path", notebooks(), ids=_rel)
def test_notebook_does_not_point_to_private_notes(path):
    hits = [f"cell {i} ({where}): {hit}"
            for i, where, text in _notebook_texts(path) for hit in private_note_mentions(text)]
    assert not hits, (
        f"{_rel(path)} points readers to notes they cannot open; cite a section of "
        "../docs/reference.md (e.g. ../docs/reference.md#3-shapes-at-224x224) or the paper "
        "instead:\n  " + "\n  ".join(hits)
    )


# ------------------------------------------------------------------------------------------------
# Links
# ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("path", markdown_files(), ids=_rel)
def test_markdown_links_resolve(path):
    problems = broken_links(path.read_text(encoding="utf-8"), path.parent)
    assert not problems, f"broken links in {_rel(path)}:\n  " + "\n  ".join(problems)


@pytest.mark.parametrize("path", notebooks(), ids=_rel)
def test_notebook_links_resolve(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    problems = [f"cell {i}: {problem}"
                for i, cell in enumerate(nb["cells"]) if cell["cell_type"] == "markdown"
                for problem in broken_links("".join(cell["source"]), path.parent)]
    assert not problems, f"broken links in {_rel(path)}:\n  " + "\n  ".join(problems)


def test_reference_anchors_are_stable_and_unique():
    text = REFERENCE.read_text(encoding="utf-8")
    missing = [a for a in PINNED_ANCHORS if a not in anchors(text)]
    assert not missing, f"docs/reference.md lost the section anchors notebooks link to: {missing}"
    slugs = [github_slug(t) for _, t in _HEADING.findall(_FENCE.sub("", text))]
    duplicates = sorted({s for s in slugs if slugs.count(s) > 1})
    assert not duplicates, f"headings with the same anchor in docs/reference.md: {duplicates}"


# ------------------------------------------------------------------------------------------------
# The numbers the reference states
# ------------------------------------------------------------------------------------------------
def _count_on_meta(name: str, **overrides) -> tuple[int, dict[str, int]]:
    from tutorial_lib.profile import RESNETV2_PARTS, count_parameters_by_part
    from tutorial_lib.transunet import TransUNet, count_parameters, get_config

    with torch.device("meta"):
        model = TransUNet(get_config(name, **overrides))
    parts = RESNETV2_PARTS if model.config.backbone == "resnetv2" else None
    return count_parameters(model), (count_parameters_by_part(model, parts) if parts else {})


def test_reference_parameter_counts_match_the_library():
    text = REFERENCE.read_text(encoding="utf-8")
    total, parts = _count_on_meta("R50-ViT-B_16")
    cnn = parts["stem"] + parts["block1"] + parts["block2"] + parts["block3"]
    transformer = (parts["patch_embed"] + parts["pos_embed"] + parts["transformer_blocks"]
                   + parts["encoder_norm"])
    numbers = {
        "R50-ViT-B_16 total": total, "CNN total": cnn, "Transformer total": transformer,
        "one Transformer layer": parts["transformer_blocks"] // 12,
        **{f"R50-ViT-B_16 {k}": v for k, v in parts.items() if k != "total"},
        "R50-ViT-B_16 at 512": _count_on_meta("R50-ViT-B_16", img_size=512)[0],
        "R50-ViT-L_16": _count_on_meta("R50-ViT-L_16")[0],
        "ViT-B_16": _count_on_meta("ViT-B_16")[0],
        "blog preset, 12 classes": _count_on_meta("blog")[0],
        "blog preset, 33 classes": _count_on_meta("blog", num_classes=33)[0],
    }
    absent = {k: f"{v:,}" for k, v in numbers.items() if f"{v:,}" not in text}
    assert not absent, f"docs/reference.md does not state these library counts: {absent}"


def test_reference_total_matches_the_official_state_dict():
    total = 0
    listing = ROOT / "tests" / "fixtures" / "official-state-dict-keys.txt"
    for line in listing.read_text().splitlines():
        name, shape = line.split("\t")
        if not re.search(r"running_(mean|var)|num_batches_tracked", name):
            total += math.prod(int(d) for d in re.findall(r"\d+", shape))
    assert total == 105_277_081
    assert f"{total:,}" in REFERENCE.read_text(encoding="utf-8")
