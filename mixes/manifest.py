"""Moved: the manifest is a spine contract, :mod:`refinery.pipelines.manifest`.

Kept only so that branches written against the old location still import during the merge; nothing in this
repository imports it. Delete once no branch does.
"""

from refinery.pipelines.manifest import (  # noqa: F401
    FORMAT,
    FORMAT_VERSION,
    ManifestError,
    load_manifest,
    shard_entries,
    verify_manifest,
)
from refinery.pipelines.manifest import lexically_safe as safe_relative_path  # noqa: F401
from refinery.pipelines.storage import file_digest  # noqa: F401
