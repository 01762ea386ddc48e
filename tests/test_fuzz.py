"""Generated programs never crash the analyzer or the engine, and give the same answer twice.

The normal run tries a few dozen programs; for a longer session run this file as a script:
`python tests/test_fuzz.py 2000` (or set LOOPLINT_FUZZ_EXAMPLES).
"""

from __future__ import annotations

import os
import sys
import textwrap

import hypothesmith
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from looplint.engine import lint_bytes
from looplint.findings import Finding
from looplint.static import analyze_source

# hypothesmith compiles what it generates; its SyntaxWarnings are not about looplint.
pytestmark = pytest.mark.filterwarnings("ignore::SyntaxWarning")

FUZZ = settings(
    max_examples=int(os.environ.get("LOOPLINT_FUZZ_EXAMPLES", "30")),
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.filter_too_much],
)

# Training code spliced into generated programs, so rules get to see unusual surroundings.
LOOP = textwrap.dedent(
    """\
    for inputs, targets in loader:
        loss = criterion(model(inputs), targets)
        loss.backward()
        optimizer.step()
        writer.add_scalar("loss", loss.item(), step)
    """
)


def check_analyzer(source: str) -> None:
    first = analyze_source(source, "fuzz.py")
    assert all(isinstance(finding, Finding) for finding in first)
    assert analyze_source(source, "fuzz.py") == first
    assert [f.message for f in analyze_source(source, "fuzz.py")] == [f.message for f in first]


def check_engine(source: str) -> None:
    data = source.encode("utf-8", "surrogatepass")
    first = lint_bytes(data, "fuzz.py")
    assert lint_bytes(data, "fuzz.py") == first
    for finding in first:
        assert finding.line >= 1 and finding.column >= 1
        assert finding.code.startswith("LL")


@FUZZ
@given(hypothesmith.from_grammar())
def test_generated_programs(source):
    check_analyzer(source)
    check_engine(source)


@FUZZ
@given(hypothesmith.from_grammar(), st.sampled_from(["before", "after", "indented"]))
def test_generated_programs_around_a_training_loop(generated, where):
    if where == "before":
        source = LOOP + generated
    elif where == "after":
        source = generated.rstrip("\\") + "\n" + LOOP
    else:
        source = "def train():\n" + textwrap.indent(LOOP, "    ") + generated
    check_analyzer(source)
    check_engine(source)


@FUZZ
@given(st.binary(max_size=400))
def test_arbitrary_bytes(data):
    first = lint_bytes(data, "fuzz.py")
    assert lint_bytes(data, "fuzz.py") == first
    assert lint_bytes(data, "fuzz.ipynb") == lint_bytes(data, "fuzz.ipynb")


if __name__ == "__main__":
    os.environ["LOOPLINT_FUZZ_EXAMPLES"] = sys.argv[1] if len(sys.argv) > 1 else "1000"
    sys.exit(pytest.main([__file__, "-q", "-p", "no:cacheprovider"]))
