"""The docs stay true to the code: the CLI reference is the parser's, every setting is documented, every page the
README sends a reader to exists."""

import re
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_the_cli_reference_is_the_parser_s() -> None:
    from apps.cli.reference import reference

    assert (REPO / "docs" / "cli.md").read_text() == reference(), \
        "docs/cli.md is stale: run `python -m apps.cli.reference > docs/cli.md`"


def test_every_verb_and_option_is_in_the_reference() -> None:
    from apps.cli.reference import reference

    text = reference()
    for verb in ("demo", "run", "review serve", "version create", "model rollback", "export"):
        assert f"## autoannotate {verb}\n" in text
    for option in ("--task-file", "--negatives", "--trust-sizes", "--target-precision", "--link"):
        assert f"`{option}`" in text


def test_every_setting_is_documented() -> None:
    from core.settings import ENVIRONMENT

    documented = "".join(path.read_text() for path in (REPO / "docs").glob("*.md"))
    assert [variable for variable in ENVIRONMENT if variable not in documented] == []


def test_the_readme_is_a_front_page_whose_links_lead_somewhere() -> None:
    readme = (REPO / "README.md").read_text()
    assert len(readme.splitlines()) <= 200
    links = re.findall(r"\]\((docs/[\w.-]+\.md)\)", readme)
    assert len(set(links)) == 8
    assert [link for link in links if not (REPO / link).is_file()] == []
    assert "make run" in readme and "make test" in readme
