"""Task tests write the corpus cache into a temporary folder, never the user's ~/.cache."""

from __future__ import annotations

import pytest


@pytest.fixture(scope="session", autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory):
    mp = pytest.MonkeyPatch()
    mp.setenv("TRAINWELL_CACHE_DIR", str(tmp_path_factory.mktemp("trainwell-cache")))
    yield
    mp.undo()
