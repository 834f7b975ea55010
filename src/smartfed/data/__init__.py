from smartfed.data.compositions import COMPOSITIONS, Composition, Splits, assert_disjoint, composition_splits, heldout_split
from smartfed.data.records import SKILLS, Example, chat_prompt, task_prompt
from smartfed.data.sources import SOURCES, DataError, data_dir, load_source

__all__ = [
    "COMPOSITIONS",
    "SKILLS",
    "SOURCES",
    "Composition",
    "DataError",
    "Example",
    "assert_disjoint",
    "chat_prompt",
    "Splits",
    "composition_splits",
    "heldout_split",
    "data_dir",
    "load_source",
    "task_prompt",
]
