"""The README's library example runs as written and trains a working classifier."""

import contextlib
import io

from tests.conftest import REPO


def test_readme_library_example_runs():
    text = (REPO / "README.md").read_text()
    start = text.index("```python\n") + len("```python\n")
    code = text[start : text.index("```", start)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out):
        exec(compile(code, "README.md", "exec"), {})  # noqa: S102 - the project's own README
    assert float(out.getvalue().strip().splitlines()[-1]) > 0.8
