"""The fix engine: batching, verification and rejection, on a small rule set written here.

The rules below stand in for the analyzer so that each check of the engine can be exercised on
purpose: a good fix, a fix that breaks the syntax, one that does not remove its finding, one that
brings a new finding, and fixes whose edits collide.
"""

from __future__ import annotations

import os
import re
import stat
import warnings

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from looplint.engine.fixer import apply_fixes, decode_source, fix_bytes, write_atomic
from looplint.findings import Edit, Finding, Fix

ACCUMULATION = re.compile(r"^[ \t]*(?P<total>\w+) \+= (?P<value>\w+)$", re.MULTILINE)
LOSS_NAME = re.compile(r"\bloss\b")


def toy_analyze(source: str) -> list[Finding]:
    """A few line-based rules with fixes, plus LL000 on syntax errors, like the real analyzer."""
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")  # generated text: `1if x` warns, as the analyzer's check does not
            compile(source, "toy.py", "exec")
    except SyntaxError as error:
        return [Finding("toy.py", error.lineno or 1, 1, "LL000", "syntax error")]
    findings = []
    for match in ACCUMULATION.finditer(source):
        end = match.end("value")
        findings.append(
            _finding(
                source,
                match.start("total"),
                "LL203",
                f"`{match['total']}` accumulates the tensor `{match['value']}`",
                Fix("add .item()", (Edit(end, end, ".item()"),)),
            )
        )
    for match in LOSS_NAME.finditer(source):
        rename = Fix("rename", (Edit(match.start(), match.end(), "batch_loss"),), safe=False)
        findings.append(_finding(source, match.start(), "LL998", "name `loss`", rename))
    for code, marker, replacement in RULES_WITH_BAD_FIXES:
        for match in re.finditer(re.escape(marker), source):
            fix = Fix("bad", (Edit(match.start(), match.end(), replacement),))
            findings.append(_finding(source, match.start(), code, f"uses {marker}", fix))
    return findings


# (code, what it flags, what its fix writes instead)
RULES_WITH_BAD_FIXES = [
    ("LL901", "breaks_syntax()", "breaks_syntax(("),  # the result does not parse
    ("LL902", "stays()", "stays()  # fixed"),  # the finding is still there afterwards
    ("LL903", "spawns()", "stays()"),  # the fix brings an LL902 that was not there
]


def _finding(source: str, offset: int, code: str, message: str, fix: Fix) -> Finding:
    line = source.count("\n", 0, offset) + 1
    column = offset - (source.rfind("\n", 0, offset) + 1) + 1
    return Finding("toy.py", line, column, code, message, fix=fix)


def fix_toy(source: str, select=None):
    return apply_fixes(source, toy_analyze(source), toy_analyze, select)


def safe_only(finding: Finding) -> bool:
    return finding.fix is not None and finding.fix.safe


def test_applies_several_fixes_in_one_pass_later_offsets_first():
    source = "for x in data:\n    total += err\n    count += err\n"
    result = fix_toy(source, safe_only)
    assert result.source == "for x in data:\n    total += err.item()\n    count += err.item()\n"
    assert [f.code for f in result.applied] == ["LL203", "LL203"]
    assert result.findings == []


def test_fixes_that_touch_are_applied_in_later_rounds_after_reanalysis():
    # .item() is inserted where the rename ends: the rename waits, then is recomputed.
    result = fix_toy("total += loss\n")
    assert result.source == "total += batch_loss.item()\n"
    assert sorted(f.code for f in result.applied) == ["LL203", "LL998"]


def test_unsafe_fixes_only_when_selected():
    result = fix_toy("total += loss\n", safe_only)
    assert result.source == "total += loss.item()\n"
    assert [f.code for f in result.findings] == ["LL998"]


@pytest.mark.parametrize("code", ["LL901", "LL902", "LL903"])
def test_a_fix_that_fails_verification_is_rejected_and_the_others_still_apply(code):
    bad_call = {"LL901": "breaks_syntax()", "LL902": "stays()", "LL903": "spawns()"}[code]
    source = f"total += err\n{bad_call}\n"
    result = fix_toy(source)
    assert result.source == f"total += err.item()\n{bad_call}\n"
    assert [f.code for f in result.applied] == ["LL203"]
    assert [f.code for f in result.rejected] == [code]


def test_a_batch_that_fails_is_retried_one_fix_at_a_time():
    source = "breaks_syntax()\ntotal += err\n"
    calls = []

    def counting_analyze(text: str) -> list[Finding]:
        calls.append(text)
        return toy_analyze(text)

    result = apply_fixes(source, toy_analyze(source), counting_analyze)
    assert result.source == "breaks_syntax()\ntotal += err.item()\n"
    # The failing batch held both fixes; the good one then went through alone.
    assert "breaks_syntax((\ntotal += err.item()\n" in calls


def test_nothing_to_fix_returns_the_text_unchanged():
    result = fix_toy("print('clean')\n")
    assert result.source == "print('clean')\n"
    assert result.applied == result.rejected == []


def test_the_result_is_a_fixpoint():
    source = "total += loss\nbreaks_syntax()\nstays()\nspawns()\nrunning += loss\n"
    once = fix_toy(source)
    twice = fix_toy(once.source)
    assert twice.source == once.source
    assert twice.applied == []


def test_duplicate_findings_count_each_occurrence():
    # Two identical messages: fixing one of them must leave exactly one.
    source = "total += err\ntotal += err\n"
    only_first = [f for f in toy_analyze(source) if f.line == 1]

    def select_first_line(finding: Finding) -> bool:
        return finding in only_first

    result = apply_fixes(source, toy_analyze(source), toy_analyze, select_first_line)
    assert result.source == "total += err.item()\ntotal += err\n"
    assert len(result.findings) == 1


@pytest.mark.parametrize(
    "edits",
    [
        (Edit(5, 9, "a"), Edit(7, 8, "b")),  # its own edits overlap
        (Edit(3, 3, "a"), Edit(3, 3, "b")),  # two insertions at one place: order unknown
        (Edit(-1, 2, "a"),),
        (Edit(4, 2, "a"),),
        (),
    ],
)
def test_malformed_fixes_are_rejected_without_being_applied(edits):
    source = "x = 1\n"
    finding = Finding("toy.py", 1, 1, "LL900", "hand-made", fix=Fix("odd", edits))
    calls = []

    def verify(text: str) -> list[Finding]:
        calls.append(text)
        return [] if text != source else [finding]

    result = apply_fixes(source, [finding], verify)
    assert result.source == source
    assert result.rejected == [finding]
    assert calls == []


def test_a_fix_may_insert_where_its_own_deletion_ends():
    source = "b()\na()\n"
    rewrite = Fix("rewrite", (Edit(0, 4, ""), Edit(4, 4, "c()\n")))

    def verify(text: str) -> list[Finding]:
        return [Finding("toy.py", 1, 1, "LL900", "b", fix=rewrite)] if text == source else []

    assert apply_fixes(source, verify(source), verify).source == "c()\na()\n"


def test_a_fix_that_changes_nothing_is_rejected():
    finding = Finding("toy.py", 1, 1, "LL900", "m", fix=Fix("noop", (Edit(0, 1, "x"),)))
    result = apply_fixes("x = 1\n", [finding], lambda text: [finding])
    assert result.source == "x = 1\n"
    assert result.rejected == [finding]


def test_decode_source_honors_bom_and_coding_cookie():
    assert decode_source("x = 'é'\n".encode()) == ("x = 'é'\n", "utf-8")
    text, codec = decode_source(b"\xef\xbb\xbfx = 1\n")
    assert (text, codec) == ("x = 1\n", "utf-8-sig")
    assert text.encode(codec) == b"\xef\xbb\xbfx = 1\n"
    latin = "# -*- coding: latin-1 -*-\nname = 'café'\n".encode("latin-1")
    text, codec = decode_source(latin)
    assert "café" in text
    assert text.encode(codec) == latin


@pytest.mark.parametrize(
    ("data", "reason"),
    [
        (b"x = '\xff'\n", "cannot decode"),
        (b"# coding: klingon\nx = 1\n", "cannot decode"),
    ],
)
def test_undecodable_files_are_left_alone_with_a_clear_finding(data, reason):
    outcome = fix_bytes(data, "bad.py")
    assert outcome.new_data == data
    assert outcome.applied == []
    [finding] = outcome.remaining
    assert finding.code == "LL000"
    assert reason in finding.message


def test_a_file_that_does_not_parse_is_never_touched():
    data = b"for x in y:\n    loss.backward(\n"
    outcome = fix_bytes(data, "broken.py", unsafe=True)
    assert outcome.new_data == data
    assert outcome.applied == []
    assert [f.code for f in outcome.remaining] == ["LL000"]


def test_invalid_notebook_is_reported_not_raised():
    outcome = fix_bytes(b"{not json", "broken.ipynb")
    assert outcome.new_data == b"{not json"
    assert outcome.remaining[0].code == "LL000"
    assert "notebook" in outcome.remaining[0].message


def test_write_atomic_replaces_content_and_keeps_the_mode(tmp_path):
    target = tmp_path / "train.py"
    target.write_bytes(b"old\n")
    os.chmod(target, 0o751)
    write_atomic(target, b"new\r\n")
    assert target.read_bytes() == b"new\r\n"
    assert stat.S_IMODE(target.stat().st_mode) == 0o751
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.py"]  # no temporary file left


def test_write_atomic_leaves_the_file_intact_when_writing_fails(tmp_path):
    target = tmp_path / "train.py"
    target.write_bytes(b"old\n")
    with pytest.raises(TypeError):
        write_atomic(target, "not bytes")  # type: ignore[arg-type]
    assert target.read_bytes() == b"old\n"
    assert sorted(p.name for p in tmp_path.iterdir()) == ["train.py"]


LOOP = "total = 0\nfor x in data:\n    total += err\n    count += err\nprint(total)\n"


@settings(max_examples=200, deadline=None)
@given(
    st.lists(
        st.tuples(
            st.integers(0, len(LOOP)),
            st.integers(0, 12),
            st.sampled_from(["", "(", ")", ":", "\n", "    ", "x", ".item()", "\n    y = 1\n"]),
        ),
        max_size=4,
    )
)
def test_whatever_the_fixes_the_result_parses_and_is_a_fixpoint(raw_edits):
    edits = tuple(Edit(start, min(start + length, len(LOOP)), text) for start, length, text in raw_edits)
    arbitrary = [
        Finding("toy.py", 1, 1, "LL900", f"edit {i}", fix=Fix("?", (e,))) for i, e in enumerate(edits)
    ]
    result = apply_fixes(LOOP, toy_analyze(LOOP) + arbitrary, toy_analyze)
    compile(result.source, "toy.py", "exec")
    assert fix_toy(result.source).source == result.source


def test_write_atomic_through_a_symlink_keeps_the_link(tmp_path):
    real = tmp_path / "real.py"
    real.write_bytes(b"old\n")
    link = tmp_path / "train.py"
    link.symlink_to(real)
    write_atomic(link, b"new\n")
    assert link.is_symlink()
    assert real.read_bytes() == b"new\n"
