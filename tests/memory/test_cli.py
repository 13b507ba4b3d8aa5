"""``llmagentos memory``: put, search, get, list, delete and state from the shell."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from llmagentos.cli.main import main


def _run(capsys: pytest.CaptureFixture[str], *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def test_put_search_get_delete_round_trip(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    store = ["--store", str(tmp_path / "m.db")]
    texts = ["The dock is south-east.", "Corridor B floods."]
    meta = ["--metadata", '{"src": "ops"}', "--embedder", "hash:64"]
    code, out, err = _run(capsys, "memory", "put", *texts, *meta, *store)
    assert code == 0 and "stored 2 in default/cli/semantic" in err
    dock_id = out.split()[0]
    code, out, _ = _run(capsys, "memory", "search", "where is the dock", "--json", *store)
    hits = json.loads(out)
    assert (
        code == 0
        and hits[0]["item"]["id"] == dock_id
        and hits[0]["item"]["metadata"] == {"src": "ops"}
    )
    code, out, _ = _run(capsys, "memory", "get", dock_id, *store)
    assert json.loads(out)["text"] == "The dock is south-east."
    code, out, _ = _run(capsys, "memory", "list", "--json", *store)
    assert len(json.loads(out)) == 2
    code, _, err = _run(capsys, "memory", "delete", dock_id, "no-such-id", *store)
    assert code == 2 and "no-such-id" in err
    code, _, err = _run(capsys, "memory", "delete", dock_id, *store)
    assert code == 0 and "deleted 1" in err
    code, out, _ = _run(capsys, "memory", "state", *store)
    assert json.loads(out)["namespaces"][0]["items"] == 1


@pytest.mark.parametrize(
    ("argv", "names"),
    [
        (["search", "x", "--agent", "ghost"], "default/ghost/semantic"),
        (["search", "x", "--where", '{"a": {"$regex": 1}}'], "where.a.$regex"),
        (["search", "x", "--where", "{not json"], "--where"),
        (["put", "x", "--kind", "dreams"], "kind"),
        (["put", "x", "--metadata", "[1"], "--metadata"),
        (["put", "a", "b", "--key", "k"], "--key"),
        (["put", "   "], "items[0].text"),
        (["search", "x", "-k", "0"], "-k"),
    ],
)
def test_bad_input_exits_2_naming_it(
    tmp_path: Path, capsys: pytest.CaptureFixture[str], argv: list[str], names: str
) -> None:
    store = (
        ["--store", str(tmp_path / "m.db"), "--embedder", "hash:64"]
        if argv[0] in ("put", "search")
        else []
    )
    _run(
        capsys, "memory", "put", "seed", "--store", str(tmp_path / "m.db"), "--embedder", "hash:64"
    )
    code, _, err = _run(capsys, "memory", *argv, *store)
    assert code == 2, err
    assert names in err
