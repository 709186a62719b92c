"""docs/torch_api.md must match the package: every name marked done imports."""

import importlib.util
import pathlib

import pytest

ROOT = pathlib.Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("torch_api_table",
                                              ROOT / "scripts" / "torch_api_table.py")
torch_api_table = importlib.util.module_from_spec(spec)
spec.loader.exec_module(torch_api_table)


def _committed_rows():
    rows = {}
    for line in (ROOT / "docs" / "torch_api.md").read_text().splitlines():
        if line.startswith("| `"):
            cells = [c.strip().strip("`") for c in line.strip("|").split("|")]
            rows[cells[1]] = cells[2]
    return rows


def test_every_name_has_a_row():
    committed = _committed_rows()
    for section, name, _ in torch_api_table.read_rows():
        assert torch_api_table.jaxq_path(section, name) in committed, name


@pytest.mark.parametrize("path,status", sorted(_committed_rows().items()))
def test_status_is_true(path, status):
    """done/partial rows import; missing rows really are missing (regenerate the table)."""
    assert torch_api_table.status(path) == status, (
        f"{path} is marked {status} but the package says {torch_api_table.status(path)}; "
        "run scripts/torch_api_table.py")
