import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).parent))  # lvm_helpers

from lvm_helpers import write_corpus  # noqa: E402


@pytest.fixture
def corpus(tmp_path):
    return write_corpus(tmp_path / "corpus")
