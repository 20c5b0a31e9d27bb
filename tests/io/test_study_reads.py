"""Reader-study reads.csv: every reading (io.study_reads) and the case's reads for matching (io.reads)."""

from __future__ import annotations

import pandas as pd
import pytest

from neckmatch.errors import InputError
from neckmatch.io.reads import read_reads
from neckmatch.io.study_reads import feature_columns, read_study_reads

HEAD = "node,reader,score,malignant,modality,phase,read_order,f_signal,f_short_axis_mm\n"


def _write(tmp_path, body, head=HEAD):
    f = tmp_path / "reads.csv"
    f.write_text(head + body)
    return f


def test_every_reading_with_defaults_and_features(tmp_path):
    f = _write(tmp_path, "1,R1,4,yes,T2star,explorative,1,bright,6.5\n1,R1,2,no,T1,explorative,1,dark,6.5\n"
                         "2,R1,1,no,T2star,,2,dark,3\n2,R1,1,no,T2star,,5,dark,3\n")
    reads = read_study_reads(f)
    assert reads["phase"].tolist() == ["explorative", "explorative", "pilot", "pilot"]  # empty = pilot
    assert reads["read_order"].tolist() == [1, 1, 2, 5]
    assert feature_columns(reads) == ["f_signal", "f_short_axis_mm"]
    assert reads["malignant"].tolist() == [True, False, False, False]


def test_plain_reads_file_is_one_modality_pilot(tmp_path):
    reads = read_study_reads(_write(tmp_path, "1,R1,4,yes\n", head="node,reader,score,malignant\n"))
    assert reads[["modality", "phase"]].values.tolist() == [["", "pilot"]] and reads["read_order"].isna().all()


@pytest.mark.parametrize("body, match", [
    ("1,R1,4,yes,T2star,training,1,bright,6\n", "row 1: phase: must be explorative or pilot, got 'training'"),
    ("1,R1,4,yes,T2star,pilot,0,bright,6\n", "row 1: read_order: must be a whole number >= 1, got '0'"),
    ("1,R1,4,yes,T2star,pilot,1.5,bright,6\n", "row 1: read_order: must be a whole number >= 1, got '1.5'"),
    ("1,R1,4,yes,T2star,pilot,1,b,6\n1,R1,3,yes,T2star,pilot,1,b,6\n", "row 2: reader: reader 'R1' reads node 1 "
                                                                      "twice at the same time"),
])
def test_bad_study_columns(tmp_path, body, match):
    f = _write(tmp_path, body)
    with pytest.raises(InputError, match=match):
        read_study_reads(f)


def test_bad_read_at(tmp_path):
    f = _write(tmp_path, "1,R1,4,yes,2024-13-45\n", head="node,reader,score,malignant,read_at\n")
    with pytest.raises(InputError, match="row 1: read_at: must be an ISO 8601 date or date-time, got '2024-13-45'"):
        read_study_reads(f)


def test_case_reads_keep_first_modality_and_first_reading(tmp_path):
    f = _write(tmp_path, "1,R1,4,yes,T2star,pilot,1,b,6\n1,R1,2,no,T1,pilot,1,d,6\n1,R1,5,yes,T2star,pilot,9,b,6\n"
                         "1,R2,3,no,T2star,pilot,1,b,6\n")
    reads = read_reads(f, labels=[1])
    assert [(r.reader, r.score) for r in reads] == [("R1", 4.0), ("R2", 3.0)]


def test_case_reads_still_refuse_a_plain_double_read(tmp_path):
    f = _write(tmp_path, "1,R1,4,yes\n1,R1,3,yes\n", head="node,reader,score,malignant\n")
    with pytest.raises(InputError, match="reader 'R1' reads node 1 twice"):
        read_reads(f, labels=[1])


def test_study_reads_frame_types(tmp_path):
    reads = read_study_reads(_write(tmp_path, "3,R1,,,T2star,pilot,1,dark,4\n"))
    assert pd.isna(reads["score"].iloc[0]) and reads["malignant"].iloc[0] is None and reads["node"].iloc[0] == 3
