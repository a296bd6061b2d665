import pandas as pd
import pytest

from repmatch.io import concat_tables, read_table, write_table
from repmatch.tables import TIDY_COLUMNS


def _row(**extra):
    base = dict(model_a="a", layer_a="l0", index_a=0, model_b="b", layer_b="l0", index_b=0, method="m", value=0.5)
    return pd.DataFrame([{**base, **extra}])


def test_concat_tables_joins_skips_empty_and_keeps_the_schema(tmp_path):
    paths = [tmp_path / "p1.parquet", tmp_path / "p2.parquet", tmp_path / "empty.parquet"]
    write_table(_row(), paths[0])
    write_table(_row(value=0.7), paths[1])
    write_table(pd.DataFrame(columns=list(TIDY_COLUMNS)), paths[2])
    out = concat_tables(paths, tmp_path / "all.parquet", TIDY_COLUMNS)
    assert out["value"].tolist() == [0.5, 0.7]
    pd.testing.assert_frame_equal(read_table(tmp_path / "all.parquet"), out)
    write_table(pd.DataFrame(columns=[*TIDY_COLUMNS, "eps"]), tmp_path / "empty_eps.parquet")
    empty = concat_tables([tmp_path / "empty_eps.parquet"], tmp_path / "none.parquet", [*TIDY_COLUMNS, "eps"])
    assert empty.empty and list(empty.columns) == [*TIDY_COLUMNS, "eps"]


def test_concat_tables_refuses_a_table_without_the_required_columns(tmp_path):
    bad = tmp_path / "bad.parquet"
    write_table(_row().drop(columns="method"), bad)
    with pytest.raises(ValueError, match="bad.parquet.*method"):
        concat_tables([bad], tmp_path / "all.parquet", TIDY_COLUMNS)
    assert not (tmp_path / "all.parquet").exists()
