"""The ORM classes (storage/models.py) against the Core tables they are mapped onto
(storage/tables.py): the columns are declared once, in the tables; a class's annotations only
type its attributes, so nothing but this test notices one that names a column wrongly or
misses one."""

from __future__ import annotations

from metawsm.storage import tables
from metawsm.storage.models import Base


def test_every_class_annotates_exactly_the_columns_of_its_table_in_order() -> None:
    for mapper in Base.registry.mappers:
        cls = mapper.class_
        columns = [column.name for column in mapper.local_table.columns]
        assert list(cls.__annotations__) == columns, cls.__name__


def test_every_table_has_one_class_and_the_classes_share_the_tables_metadata() -> None:
    mapped = [mapper.local_table.name for mapper in Base.registry.mappers]
    assert sorted(mapped) == sorted(tables.metadata.tables)
    assert Base.metadata is tables.metadata
