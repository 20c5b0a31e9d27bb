"""Pathology report readers: every spec column, extras carried through, containers derived and checked, bad rows."""

from __future__ import annotations

from pathlib import Path

import pytest

from neckmatch.errors import InputError
from neckmatch.io.pathology import derive_containers, read_containers, read_path_nodes
from neckmatch.io.reads import read_reads
from neckmatch.model import Side, Status

HEADER = "node,container,side,level,size_mm,status,cc,ap,fragment_of,deposit_mm,ene,slide\n"
ROWS = (
    "R-II-01,R-II,R,II,10.5,positive,0.1,0.9,,4.0,yes,A1\n"
    "R-II-01b,R-II,R,II,3.0,positive,,,R-II-01,,,A1\n"
    "R-II-02,R-II,R,II,,negative,,,,,,A2\n"
    "L-III+IV-01,L-III+IV,l,iii+iv,6,Negative,1,0,,,,B1\n"
)


def _csv(tmp: Path, text: str, name: str = "nodes.csv") -> Path:
    (tmp / name).write_text(text)
    return tmp / name


def test_every_column_is_read(tmp_path: Path) -> None:
    nodes = read_path_nodes(_csv(tmp_path, HEADER + ROWS))
    first, frag, nosize, merged = nodes
    got = (first.node, first.container, first.side, str(first.level), first.size_mm)
    assert got == ("R-II-01", "R-II", Side.R, "II", 10.5)
    assert (first.status, first.cc, first.ap, first.fragment_of) == (Status.POSITIVE, 0.1, 0.9, None)
    assert dict(first.extra) == {"deposit_mm": "4.0", "ene": "yes", "slide": "A1"}
    assert frag.fragment_of == "R-II-01" and nosize.size_mm is None and nosize.cc is None
    got = (merged.side, str(merged.level), merged.status, merged.cc, merged.ap)
    assert got == (Side.L, "III+IV", Status.NEGATIVE, 1.0, 0.0)


def test_merged_level_in_either_order_is_one_level(tmp_path: Path) -> None:
    """'IV+III' and 'III+IV' name the same container level (they were unequal: a false disagreement)."""
    rows = "a,L-34,L,III+IV,,negative\nb,L-34,L,IV+III,,negative\n"
    nodes = read_path_nodes(_csv(tmp_path, "node,container,side,level,size_mm,status\n" + rows))
    assert [str(n.level) for n in nodes] == ["III+IV", "III+IV"]
    path = _csv(tmp_path, CONTAINERS + "L-34,L,iv + iii,2,0,,\n", "containers.csv")
    (c,) = read_containers(path, nodes)
    assert c.level == nodes[0].level and str(c.level) == "III+IV"


def test_containers_derived_from_rows_skip_fragments(tmp_path: Path) -> None:
    cs = derive_containers(read_path_nodes(_csv(tmp_path, HEADER + ROWS)))
    assert [(c.container, c.side.value, str(c.level), c.nodes_examined, c.nodes_positive) for c in cs] == [
        ("R-II", "R", "II", 2, 1), ("L-III+IV", "L", "III+IV", 1, 0)
    ]


def test_a_positive_fragment_makes_its_node_and_container_positive(tmp_path: Path) -> None:
    """The deposit was found in one piece of a bisected node: the node, so its container, is positive."""
    rows = "a,R-III,R,III,8,negative,\na2,R-III,R,III,3,positive,a\nb,R-III,R,III,4,negative,\n"
    nodes = read_path_nodes(_csv(tmp_path, "node,container,side,level,size_mm,status,fragment_of\n" + rows))
    (c,) = derive_containers(nodes)
    assert (c.nodes_examined, c.nodes_positive) == (2, 1)


def test_lydata_style_range_level(tmp_path: Path) -> None:
    (n,) = read_path_nodes(_csv(tmp_path, "node,container,side,level,status\na,c,R,Ib_to_III,negative\n"))
    assert str(n.level) == "IB+II+III"


CONTAINERS = "container,side,level,nodes_examined,nodes_positive,largest_deposit_mm,ene\n"


def test_containers_file_agrees_with_rows(tmp_path: Path) -> None:
    nodes = read_path_nodes(_csv(tmp_path, HEADER + ROWS))
    text = CONTAINERS + "R-II,R,II,2,1,4.0,yes\nL-III+IV,L,III+IV,1,0,,\n"
    cs = read_containers(_csv(tmp_path, text, "containers.csv"), nodes)
    assert (cs[0].largest_deposit_mm, cs[0].ene, cs[1].ene) == (4.0, True, None)


def test_count_only_containers(tmp_path: Path) -> None:
    cs = read_containers(_csv(tmp_path, CONTAINERS + "L-V,L,V,7,0,,no\n", "containers.csv"))
    assert (cs[0].nodes_examined, cs[0].positive, cs[0].ene) == (7, False, False)


# ---- bad input: one per rule, each naming file, row, column and value ------------------------------------------
BAD_NODE_ROWS = [
    ("a,c,R,IIc,5,negative,,", r"nodes\.csv: row 2: level: 'IIc' is not a surgical level"),
    ("a,c,X,II,5,negative,,", r"nodes\.csv: row 2: side: must be R or L, got 'X'"),
    ("a,c,R,II,0,negative,,", r"nodes\.csv: row 2: size_mm: must be > 0, got 0"),
    ("a,c,R,II,-2,negative,,", r"nodes\.csv: row 2: size_mm: must be > 0, got -2"),
    ("a,c,R,II,big,negative,,", r"nodes\.csv: row 2: size_mm: must be a number, got 'big'"),
    ("a,c,R,II,5,negative,1.5,", r"nodes\.csv: row 2: cc: must lie in \[0, 1\], got 1\.5"),
    ("a,c,R,II,5,negative,,-0.1", r"nodes\.csv: row 2: ap: must lie in \[0, 1\], got -0\.1"),
    ("a,c,R,II,5,maybe,,", r"nodes\.csv: row 2: status: must be positive or negative, got 'maybe'"),
    ("first,c,R,II,5,negative,,", r"nodes\.csv: row 2: node: duplicate node id 'first' \(first in row 1\)"),
    (",c,R,II,5,negative,,", r"nodes\.csv: row 2: node: must not be empty"),
    ("b,c,L,II,5,negative,,", r"nodes\.csv: row 2: container: container 'c' is L II here but R II in row 1"),
]


BAD_IDS = [f"{i}-{m.split(': ')[2]}" for i, (_, m) in enumerate(BAD_NODE_ROWS)]


@pytest.mark.parametrize(("row", "message"), BAD_NODE_ROWS, ids=BAD_IDS)
def test_bad_node_row(tmp_path: Path, row: str, message: str) -> None:
    path = _csv(tmp_path, "node,container,side,level,size_mm,status,cc,ap\nfirst,c,R,II,5,negative,,\n" + row + "\n")
    with pytest.raises(InputError, match=message):
        read_path_nodes(path)


def test_missing_required_column(tmp_path: Path) -> None:
    path = _csv(tmp_path, "node,container,side,level,size_mm\na,c,R,II,5\n")
    with pytest.raises(InputError, match=r"nodes\.csv: header: missing required column 'status'"):
        read_path_nodes(path)


def test_empty_file(tmp_path: Path) -> None:
    path = _csv(tmp_path, "")
    with pytest.raises(InputError, match=r"nodes\.csv: not a readable CSV table"):
        read_path_nodes(path)


def test_containers_disagree_with_rows(tmp_path: Path) -> None:
    nodes = read_path_nodes(_csv(tmp_path, HEADER + ROWS))
    path = _csv(tmp_path, CONTAINERS + "R-II,R,II,3,1,,\nL-III+IV,L,III+IV,1,0,,\n", "containers.csv")
    msg = r"containers\.csv: row 1: nodes_examined: container 'R-II' says 3 but the node rows give 2"
    with pytest.raises(InputError, match=msg):
        read_containers(path, nodes)


def test_container_with_rows_not_listed(tmp_path: Path) -> None:
    nodes = read_path_nodes(_csv(tmp_path, HEADER + ROWS))
    path = _csv(tmp_path, CONTAINERS + "R-II,R,II,2,1,,\n", "containers.csv")
    with pytest.raises(InputError, match=r"containers\.csv: container: 'L-III\+IV' has node rows but is not listed"):
        read_containers(path, nodes)


def test_container_positive_exceeds_examined(tmp_path: Path) -> None:
    path = _csv(tmp_path, CONTAINERS + "R-II,R,II,2,3,,\n", "containers.csv")
    with pytest.raises(InputError, match=r"row 1: nodes_positive: nodes_positive \(3\) exceeds nodes_examined \(2\)"):
        read_containers(path)


def test_container_count_not_a_whole_number(tmp_path: Path) -> None:
    path = _csv(tmp_path, CONTAINERS + "R-II,R,II,2.5,0,,\n", "containers.csv")
    with pytest.raises(InputError, match=r"row 1: nodes_examined: must be a whole number >= 0, got '2\.5'"):
        read_containers(path)


@pytest.mark.parametrize(("row", "message"), [
    ("R-II,R,II,inf,0,,", r"row 1: nodes_examined: must be a whole number >= 0, got 'inf'"),
    ("R-II,R,II,3,1,nan,", r"row 1: largest_deposit_mm: must be a finite number, got 'nan'"),
    ("R-II,R,II,3,1,-4,", r"row 1: largest_deposit_mm: must be >= 0, got -4"),
    ("R-II,R,II,3,1,wide,", r"row 1: largest_deposit_mm: must be a number, got 'wide'"),
])
def test_bad_container_cells(tmp_path: Path, row: str, message: str) -> None:
    path = _csv(tmp_path, CONTAINERS + row + "\n", "containers.csv")
    with pytest.raises(InputError, match=message):
        read_containers(path)


def test_container_deposit_is_read(tmp_path: Path) -> None:
    path = _csv(tmp_path, CONTAINERS + "R-II,R,II,3,1,0,no\nR-III,R,III,3,1,7.5,yes\n", "containers.csv")
    assert [(c.largest_deposit_mm, c.ene) for c in read_containers(path)] == [(0.0, False), (7.5, True)]


# ---- reads ---------------------------------------------------------------------------------------------------
def test_reads_known_answer(tmp_path: Path) -> None:
    path = _csv(tmp_path, "node,reader,score,malignant\n3,A,5,Yes\n3,B,1,no\n4,A,2.5,\n", "r.csv")
    reads = read_reads(path, [3, 4])
    assert [(r.node, r.reader, r.score, r.malignant) for r in reads] == [
        (3, "A", 5.0, True), (3, "B", 1.0, False), (4, "A", 2.5, None)
    ]


@pytest.mark.parametrize(("row", "message"), [
    ("9,A,3,no", r"r\.csv: row 1: node: label 9 does not exist in the label map \(labels: 3, 4\)"),
    ("3.5,A,3,no", r"r\.csv: row 1: node: must be a label value \(whole number\), got '3\.5'"),
    ("3,A,high,no", r"r\.csv: row 1: score: must be a number, got 'high'"),
    ("3,A,3,perhaps", r"r\.csv: row 1: malignant: must be yes or no, got 'perhaps'"),
    ("3,,3,no", r"r\.csv: row 1: reader: must not be empty"),
])
def test_bad_reads(tmp_path: Path, row: str, message: str) -> None:
    path = _csv(tmp_path, "node,reader,score,malignant\n" + row + "\n", "r.csv")
    with pytest.raises(InputError, match=message):
        read_reads(path, [3, 4])


def test_reader_reads_node_twice(tmp_path: Path) -> None:
    path = _csv(tmp_path, "node,reader,score,malignant\n3,A,1,no\n3,A,2,no\n", "r.csv")
    with pytest.raises(InputError, match=r"row 2: reader: reader 'A' reads node 3 twice \(first in row 1\)"):
        read_reads(path, [3])


def test_excel_bom_and_crlf_are_accepted(tmp_path: Path) -> None:
    (tmp_path / "bom.csv").write_bytes("\ufeffnode,container,side,level,status\r\na,c,R,II,negative\r\n".encode())
    (n,) = read_path_nodes(tmp_path / "bom.csv")
    assert (n.node, n.status) == ("a", Status.NEGATIVE)
