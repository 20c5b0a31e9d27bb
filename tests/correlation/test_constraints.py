"""Reading people's matching decisions: good files, and every kind of bad row."""

from __future__ import annotations

import numpy as np
import pytest

from neckmatch.correlation.constraints import parse_constraints, read_constraints
from neckmatch.errors import InputError
from neckmatch.model import Case, LabelMap, PathNode, Side, SurgicalLevel


@pytest.fixture
def case():
    data = np.zeros((4, 4, 4), dtype=np.int16)
    data[0, 0, 0], data[1, 1, 1], data[2, 2, 2] = 1, 2, 3
    pn = tuple(PathNode(f"R-II-{i}", "R-II", "R", "II", "negative", size_mm=5) for i in (1, 2, 3))
    return Case("P1", "R", {Side.R: frozenset({SurgicalLevel.II})}, LabelMap(data, np.eye(4)), None, pn, ())


def _write(tmp_path, text):
    p = tmp_path / "constraints.csv"
    p.write_text(text)
    return p


def test_parse_all_actions(tmp_path):
    p = _write(tmp_path, "mr_node,path_node,action,note\n1,R-II-1,must_link,x\n2,R-II-2,cannot-link,\n"
                         "3,,unmatched,\n,R-II-3,Unmatched,\n\n1,R-II-1,must_link,dup\n")  # fmt: skip
    rows = parse_constraints(p)
    assert rows.must_link == {(1, "R-II-1"): 1}
    assert rows.cannot_link == {(2, "R-II-2"): 2}
    assert rows.unmatched_mr == {3: 3}
    assert rows.unmatched_path == {"R-II-3": 4}


def test_read_constraints_builds_solver_constraints(tmp_path, case):
    p = _write(tmp_path, "mr_node,path_node,action\n1,R-II-1,must_link\n1,R-II-2,must_link\n2,R-II-3,cannot_link\n"
                         "3,,unmatched\n")  # fmt: skip
    c = read_constraints(p, case)
    assert c.must_link == frozenset({(1, "R-II-1"), (1, "R-II-2")})  # fragments may share one MR node
    assert c.cannot_link == frozenset({(2, "R-II-3")})
    assert c.forced_unmatched_mr == frozenset({3})
    assert c.forced_unmatched_path == frozenset()


def test_missing_file(tmp_path):
    with pytest.raises(InputError, match="constraints file not found"):
        read_constraints(tmp_path / "nope.csv")


def test_missing_column(tmp_path):
    p = _write(tmp_path, "mr_node,path\n1,R-II-1\n")
    with pytest.raises(InputError, match=r"header: missing column\(s\) path_node, action; got mr_node,path"):
        read_constraints(p)


def test_unknown_action(tmp_path):
    p = _write(tmp_path, "mr_node,path_node,action\n1,R-II-1,must_link\n2,R-II-2,merge\n")
    with pytest.raises(InputError, match="row 2: action: must be one of must_link, cannot_link, unmatched, got 'merge"):
        read_constraints(p)


def test_bad_mr_label(tmp_path):
    p = _write(tmp_path, "mr_node,path_node,action\n1.5,R-II-1,must_link\n")
    with pytest.raises(InputError, match="row 1: mr_node: must be a positive integer label, got '1.5'"):
        read_constraints(p)


def test_link_needs_both_ids(tmp_path):
    p = _write(tmp_path, "mr_node,path_node,action\n1,,cannot_link\n")
    with pytest.raises(InputError, match="row 1: 'cannot_link' needs both mr_node and path_node"):
        read_constraints(p)


def test_unmatched_needs_exactly_one_id(tmp_path):
    p = _write(tmp_path, "mr_node,path_node,action\n1,R-II-1,unmatched\n")
    with pytest.raises(InputError, match="row 1: 'unmatched' needs exactly one of mr_node / path_node"):
        read_constraints(p)


def test_unknown_mr_node_against_case(tmp_path, case):
    p = _write(tmp_path, "mr_node,path_node,action\n1,R-II-1,must_link\n9,R-II-2,cannot_link\n")
    with pytest.raises(InputError, match="row 2: mr_node: case 'P1' has no MR node 9"):
        read_constraints(p, case)


def test_unknown_path_node_against_case(tmp_path, case):
    p = _write(tmp_path, "mr_node,path_node,action\n,R-IX-1,unmatched\n")
    with pytest.raises(InputError, match="row 1: path_node: case 'P1' has no pathology node 'R-IX-1'"):
        read_constraints(p, case)


def test_link_and_cannot_link_contradict(tmp_path):
    p = _write(tmp_path, "mr_node,path_node,action\n1,R-II-1,cannot_link\n1,R-II-1,must_link\n")
    with pytest.raises(InputError, match="row 2: must_link 1-'R-II-1' contradicts cannot_link in row 1"):
        read_constraints(p)


def test_link_of_forced_unmatched_node(tmp_path):
    p = _write(tmp_path, "mr_node,path_node,action\n,R-II-1,unmatched\n2,R-II-1,must_link\n")
    with pytest.raises(InputError, match="row 2: must_link of pathology node 'R-II-1' contradicts 'unmatched' in row"):
        read_constraints(p)


def test_pathology_node_linked_to_two_mr_nodes(tmp_path):
    p = _write(tmp_path, "mr_node,path_node,action\n1,R-II-1,must_link\n2,R-II-1,must_link\n")
    with pytest.raises(InputError, match="row 2: pathology node 'R-II-1' is already linked to MR node 1 in row 1"):
        read_constraints(p)


def test_an_mr_node_linked_to_three_whole_nodes_is_contradictory(tmp_path, case):
    p = _write(tmp_path, "mr_node,path_node,action\n1,R-II-1,must_link\n1,R-II-2,must_link\n1,R-II-3,must_link\n")
    with pytest.raises(InputError, match=r"row 3: MR node 1 is linked to 3 different pathology nodes"):
        read_constraints(p, case)
    two = _write(tmp_path, "mr_node,path_node,action\n1,R-II-1,must_link\n1,R-II-2,must_link\n")
    assert len(read_constraints(two, case).must_link) == 2  # a merged label: two touching nodes


def test_a_forced_pair_across_sides_is_contradictory(tmp_path):
    from pathlib import Path

    from neckmatch.io.case import read_case

    example = read_case(Path(__file__).resolve().parents[2] / "examples" / "minimal_case")
    left = next(p.node for p in example.path_nodes if p.side.value == "L" and str(p.level) not in ("VI", "VII"))
    p = _write(tmp_path, f"mr_node,path_node,action\n1,{left},must_link\n")
    with pytest.raises(InputError, match=rf"row 1: must_link across sides: MR node 1 lies on the R side .*'{left}' "
                                         "is L"):
        read_constraints(p, example)


def test_a_file_that_is_not_utf8_text_is_an_input_error(tmp_path, case):
    p = tmp_path / "c.csv"
    p.write_bytes("mr_node,path_node,action\n".encode("utf-16"))
    with pytest.raises(InputError, match="not a UTF-8 text file"):
        read_constraints(p, case)


def test_json_file_gives_the_same_constraints_as_csv(tmp_path, case):
    import json

    csv = _write(tmp_path, "mr_node,path_node,action\n1,R-II-1,must_link\n2,R-II-3,cannot_link\n3,,unmatched\n"
                           ",R-II-2,unmatched\n")  # fmt: skip
    doc = {"constraints": [{"mr_node": 1, "path_node": "R-II-1", "action": "must_link", "provenance": "agreed"},
                           {"mr_node": 2, "path_node": "R-II-3", "action": "cannot_link"},
                           {"mr_node": 3, "path_node": None, "action": "unmatched"},
                           {"path_node": "R-II-2", "action": "unmatched"}]}
    js = tmp_path / "constraints.json"
    js.write_text(json.dumps(doc))
    a, b = read_constraints(csv, case), read_constraints(js, case)
    assert (a.must_link, a.cannot_link, a.forced_unmatched_mr, a.forced_unmatched_path) == \
        (b.must_link, b.cannot_link, b.forced_unmatched_mr, b.forced_unmatched_path)


@pytest.mark.parametrize(("text", "field"), [("{not json", "not valid JSON"), ('{"rows": []}', "constraints"),
                                             ('{"constraints": [{"mr_node": 1, "action": "must_link"}]}', "row 1")])
def test_bad_json_constraints_name_the_file_and_field(tmp_path, text, field):
    p = tmp_path / "c.json"
    p.write_text(text)
    with pytest.raises(InputError, match=f"c.json.*{field}"):
        parse_constraints(p)
