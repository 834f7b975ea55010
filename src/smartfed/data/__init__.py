from smartfed.data.compositions import COMPOSITIONS, Composition, assert_disjoint, composition_splits
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
    "composition_splits",
    "data_dir",
    "load_source",
    "task_prompt",
]
