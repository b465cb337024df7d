"""Data shared by all recipes: the registry of public data sets (`list_datasets`, `fetch`, `resolve`),
readers that turn corpora into `Document`s, and offline text splitting."""

from fairtrial.data.registry import fetch, list_datasets, resolve
from fairtrial.data.readers import (CEFR_LEVELS, ONESTOP_LEVELS, Document, read_cefr_sp,
                                    read_efcamdat, read_onestopenglish, read_table,
                                    read_text_folder)

__all__ = ["fetch", "list_datasets", "resolve", "CEFR_LEVELS", "ONESTOP_LEVELS", "Document", "read_cefr_sp", "read_efcamdat",
           "read_onestopenglish", "read_table", "read_text_folder"]
